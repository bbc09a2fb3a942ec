/* longrun ROUNDS SLEEP_US: a service that runs for a long time, in short.
 * Each round allocates 4000 blocks of varied sizes from three sites, frees
 * all but one in 100 of them (a slow leak, from leak_site), marks the end
 * of the round (heapreplay_marker("round"), when the recorder is there),
 * and sleeps SLEEP_US microseconds. Deterministic: the same events in the
 * same order on every run. Prints "rounds=N kept=K". */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define PER_ROUND 4000

static void *volatile sink;
static void **kept;
static size_t nkept;
static uint64_t rng = 88172645463325252ull;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

__attribute__((noinline)) static void *small_site(void) { return malloc(16 + next() % 240); }
__attribute__((noinline)) static void *large_site(void) { return malloc(1024 + next() % 8192); }
__attribute__((noinline)) static void *leak_site(void) { return malloc(64 + next() % 64); }

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: longrun ROUNDS SLEEP_US\n");
        return 2;
    }
    long rounds = atol(argv[1]);
    long sleep_us = atol(argv[2]);
    void (*marker)(const char *) = (void (*)(const char *))dlsym(RTLD_DEFAULT, "heapreplay_marker");
    kept = malloc(sizeof(void *) * (size_t)(rounds * PER_ROUND / 100 + 1));
    void *round[PER_ROUND];
    for (long r = 0; r < rounds; r++) {
        for (int i = 0; i < PER_ROUND; i++) {
            if (i % 100 == 0) {
                kept[nkept++] = leak_site();
                round[i] = NULL;
            } else {
                round[i] = i % 7 == 0 ? large_site() : small_site();
            }
        }
        /* Freed in a shuffled order, so that addresses do not repeat simply. */
        for (int i = 0; i < PER_ROUND; i++) {
            int j = (int)(next() % PER_ROUND);
            sink = round[j];
            free(round[j]);
            round[j] = NULL;
        }
        for (int i = 0; i < PER_ROUND; i++)
            free(round[i]);
        if (marker)
            marker("round");
        if (sleep_us > 0)
            usleep((useconds_t)sleep_us);
    }
    printf("rounds=%ld kept=%zu\n", rounds, nkept);
    return 0;
}
