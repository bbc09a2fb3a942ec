/* Loads the plugin named on the command line, calls plugin_alloc, unloads
 * it, and also allocates from its own host_alloc (512 KiB in 64 blocks).
 * The plugin's blocks outlive it. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

static void *kept[64];
void *volatile sink;

__attribute__((noinline)) void host_alloc(void) {
    for (int i = 0; i < 64; i++) kept[i] = malloc(8192);
    sink = kept[0];
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    host_alloc();
    void *lib = dlopen(argv[1], RTLD_NOW);
    if (!lib) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    void (*plugin_alloc)(void) = (void (*)(void))dlsym(lib, "plugin_alloc");
    if (!plugin_alloc) return 1;
    plugin_alloc();
    if (dlclose(lib) != 0) return 1;
    return 0;
}
