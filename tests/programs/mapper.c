/* Maps memory itself, between heap allocations, for comparing mmap
 * profiling (HEAP_PROFILE_MMAP) against gperftools: whole and partial
 * munmaps, mremap growing a mapping, and sbrk growing and shrinking the
 * break. Usage: mapper ROUNDS, or mapper threads N (see below). Each round allocates 1 MB on the heap
 * (dumps fall between rounds under HEAP_PROFILE_ALLOCATION_INTERVAL). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define KB 1024ul
#define KEPT 8
void *volatile sink;

__attribute__((noinline)) void *map_site(size_t len) {
    void *p = mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    sink = p;
    return p == MAP_FAILED ? 0 : p;
}

__attribute__((noinline)) void *remap_site(void *p, size_t old, size_t len) {
    void *q = mremap(p, old, len, MREMAP_MAYMOVE);
    sink = q;
    return q == MAP_FAILED ? 0 : q;
}

__attribute__((noinline)) void grow_site(long len) {
    sink = sbrk(len);
}

__attribute__((noinline)) void *heap_site(void) {
    void *p = malloc(1024 * KB);
    memset(p, 1, 4096);
    sink = p;
    return p;
}

/* One of four threads of `mapper threads N`: N maps and unmaps, each with
 * a heap allocation between. */
static long thread_rounds;
static void *mapping_thread(void *arg) {
    (void)arg;
    for (long i = 0; i < thread_rounds; i++) {
        void *p = map_site(64 * KB);
        free(heap_site());
        if (p) munmap(p, 64 * KB);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 2 && strcmp(argv[1], "threads") == 0) {
        pthread_t t[4];
        thread_rounds = atol(argv[2]);
        for (int i = 0; i < 4; i++) pthread_create(&t[i], 0, mapping_thread, 0);
        /* A fork while the others map: the child must not hang. */
        pid_t child = fork();
        if (child == 0) { free(heap_site()); _exit(0); }
        int status = 1;
        waitpid(child, &status, 0);
        for (int i = 0; i < 4; i++) pthread_join(t[i], 0);
        return status == 0 ? 0 : 5;
    }
    long rounds = argc > 1 ? atol(argv[1]) : 40;
    /* Failing calls fail as they would unhooked, with their errno. */
    errno = 0;
    if (mmap(0, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) != MAP_FAILED || errno != EINVAL)
        return 3;
    errno = 0;
    if (munmap((void *)1, 4096) != -1 || errno != EINVAL) return 4;
    void *kept[KEPT] = {0};
    size_t kept_len[KEPT] = {0};
    void *held = 0;
    for (long i = 0; i < rounds; i++) {
        int k = i % KEPT;
        size_t len = (i % 4 + 1) * 64 * KB;
        if (kept[k]) munmap(kept[k], kept_len[k]);
        kept[k] = map_site(len);
        kept_len[k] = len;
        if (i % 5 == 2 && kept[k] && len >= 128 * KB) {
            /* Cut a page out of the middle: two pieces remain. */
            munmap((char *)kept[k] + 64 * KB, 4 * KB);
            kept[k] = 0; /* the pieces stay mapped until exit */
        }
        if (i % 7 == 3 && kept[k]) {
            void *q = remap_site(kept[k], kept_len[k], kept_len[k] * 2);
            if (q) { kept[k] = q; kept_len[k] *= 2; }
        }
        if (i % 9 == 4) {
            /* No allocation in between: the break is ours alone. */
            grow_site(32 * KB);
            grow_site(32 * KB);
            grow_site(-32 * (long)KB);
        }
        if (held) free(held);
        held = heap_site();
    }
    free(held);
    return 0;
}
