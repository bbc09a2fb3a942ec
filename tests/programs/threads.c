/* THREADS threads each make ITERS allocations through worker_alloc, freeing
 * all but KEEP of them, and report their own totals on stdout:
 *   allocs=<n> frees=<n> alloc_bytes=<n> inuse_bytes=<n>
 * Usage: threads THREADS ITERS */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#define RING 64
#define KEEP 16

static atomic_ulong total_allocs, total_frees, total_bytes, total_freed;
static long iters;
void *volatile sink;

__attribute__((noinline)) void *worker_alloc(size_t n) {
    void *p = malloc(n);
    sink = p;
    return p;
}

__attribute__((noinline)) void worker_free(void *p) {
    free(p);
    sink = 0;
}

static void *worker(void *arg) {
    unsigned long seed = (unsigned long)(size_t)arg * 2654435761u + 1;
    void *ring[RING] = {0};
    size_t sizes[RING] = {0};
    unsigned long allocs = 0, frees = 0, bytes = 0, freed = 0;
    for (long i = 0; i < iters; i++) {
        seed = seed * 6364136223846793005ul + 1442695040888963407ul;
        size_t n = 1 + (seed >> 33) % 256;
        int slot = i % RING;
        if (ring[slot]) {
            worker_free(ring[slot]);
            frees++;
            freed += sizes[slot];
        }
        ring[slot] = worker_alloc(n);
        sizes[slot] = n;
        allocs++;
        bytes += n;
    }
    /* Free all but KEEP blocks, which stay in use until exit. */
    for (int s = KEEP; s < RING; s++) {
        if (ring[s]) {
            worker_free(ring[s]);
            frees++;
            freed += sizes[s];
        }
    }
    atomic_fetch_add(&total_allocs, allocs);
    atomic_fetch_add(&total_frees, frees);
    atomic_fetch_add(&total_bytes, bytes);
    atomic_fetch_add(&total_freed, freed);
    return 0;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 8;
    iters = argc > 2 ? atol(argv[2]) : 100000;
    pthread_t tids[256];
    for (int t = 0; t < threads; t++) pthread_create(&tids[t], 0, worker, (void *)(size_t)(t + 1));
    for (int t = 0; t < threads; t++) pthread_join(tids[t], 0);
    printf("allocs=%lu frees=%lu alloc_bytes=%lu inuse_bytes=%lu\n", total_allocs, total_frees,
           total_bytes, total_bytes - total_freed);
    return 0;
}
