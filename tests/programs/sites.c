/* Allocation sites with exactly known amounts, for reading back through pprof.
 * In use at exit: leak_a 2 MiB (2048 objects), calloc_c 1 MiB (64),
 * realloc_d 1 MiB (1), aligned_e 1 MiB (16). churn_b allocates 3 MiB
 * (3072 objects) and frees all of it. Nothing else allocates. */
#include <stdlib.h>
#include <string.h>

void *volatile sink;
static void *kept[4096];
static int nkept;

__attribute__((noinline)) void keep(void *p) { kept[nkept++] = p; }

__attribute__((noinline)) void leak_a(void) {
    for (int i = 0; i < 2048; i++) {
        void *p = malloc(1024);
        memset(p, 1, 16);
        keep(p);
    }
}

__attribute__((noinline)) void churn_b(void) {
    for (int i = 0; i < 3072; i++) {
        void *p = malloc(1024);
        sink = p;
        free(p);
    }
}

__attribute__((noinline)) void calloc_c(void) {
    for (int i = 0; i < 64; i++) keep(calloc(16, 1024));
}

__attribute__((noinline)) void realloc_d(void) {
    void *p = malloc(512 * 1024);
    sink = p;
    p = realloc(p, 1024 * 1024);
    keep(p);
    sink = 0;
}

__attribute__((noinline)) void aligned_e(void) {
    for (int i = 0; i < 8; i++) {
        void *p = 0;
        if (posix_memalign(&p, 4096, 65536) != 0) abort();
        keep(p);
    }
    for (int i = 0; i < 8; i++) keep(aligned_alloc(4096, 65536));
}

/* Two caller layers (no tail calls: each stores after the call), so a
 * correct unwinder shows layer1 -> layer2 -> leak_a. */
__attribute__((noinline)) void layer2(void) { leak_a(); sink = 0; }
__attribute__((noinline)) void layer1(void) { layer2(); sink = 0; }

int main(void) {
    layer1();
    churn_b();
    calloc_c();
    realloc_d();
    aligned_e();
    return 0;
}
