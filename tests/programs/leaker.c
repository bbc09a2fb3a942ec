/* Leaks on purpose, for leak checks. Usage: leaker N: N blocks of 100 bytes
 * from leak_site are dropped (unreachable); one block from cache_site stays
 * reachable from a global until exit, as a cache does; every block from
 * temp_site is freed. */
#include <stdlib.h>
#include <string.h>

void *volatile sink;
static void *cache;

__attribute__((noinline)) void *leak_site(void) { void *p = malloc(100); memset(p, 1, 100); sink = p; return p; }
__attribute__((noinline)) void *cache_site(void) { void *p = malloc(4096); memset(p, 2, 4096); return p; }
__attribute__((noinline)) void *temp_site(void) { void *p = malloc(64); sink = p; return p; }

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 0;
    cache = cache_site();
    for (int i = 0; i < 1000; i++) free(temp_site());
    for (int i = 0; i < n; i++) {
        void *p = leak_site();
        p = 0; /* dropped */
        (void)p;
    }
    sink = 0;
    return cache == 0;
}
