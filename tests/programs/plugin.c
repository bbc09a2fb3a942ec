/* A library loaded with dlopen: plugin_alloc keeps 128 blocks of 8 KiB (1 MiB). */
#include <stdlib.h>

static void *kept[128];
void *volatile plugin_sink;

__attribute__((noinline)) void plugin_alloc(void) {
    for (int i = 0; i < 128; i++) kept[i] = malloc(8192);
    plugin_sink = kept[0];
}
