/* Loads the library named on the command line with dlopen into this
 * running program, then allocates and frees; exits 3 if the library
 * changed the disposition of SIGUSR2 or SIGSEGV (it must stay inert). */
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

void *volatile sink;

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL);
    if (!lib) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    for (int i = 0; i < 1000; i++) {
        sink = malloc(100 + i);
        free(sink);
    }
    struct sigaction usr2, segv;
    sigaction(SIGUSR2, 0, &usr2);
    sigaction(SIGSEGV, 0, &segv);
    if (usr2.sa_handler != SIG_DFL || segv.sa_handler != SIG_DFL) return 3;
    return 0;
}
