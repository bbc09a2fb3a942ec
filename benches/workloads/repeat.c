/*
 * repeat N: a deterministic loop, the same eight steps over and over: each
 * allocates a block of one of eight sizes and frees the block of that size
 * from eight steps before. N malloc/free pairs. A long run's repetition at
 * its purest: what a trace at rest should shrink to almost nothing.
 * Prints "mallocs=N frees=M".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) static void *take(size_t size)
{
    return malloc(size);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: repeat N\n");
        return 2;
    }
    char *end;
    double v = strtod(argv[1], &end); /* 1e6 as well as 1000000 */
    if (end == argv[1] || *end != '\0' || v < 0 || v > 1e15) {
        fprintf(stderr, "repeat: N must be a count, not '%s'\n", argv[1]);
        return 2;
    }
    uint64_t n = (uint64_t)v;
    void *kept[8] = {0};
    uint64_t mallocs = 0, frees = 0;
    for (uint64_t i = 0; i < n; i++) {
        void *p = take(16 + (i % 8) * 16);
        if (p == NULL) {
            fprintf(stderr, "repeat: malloc failed\n");
            return 2;
        }
        mallocs++;
        if (kept[i % 8] != NULL) {
            free(kept[i % 8]);
            frees++;
        }
        kept[i % 8] = p;
    }
    for (int i = 0; i < 8; i++) {
        if (kept[i] != NULL) {
            free(kept[i]);
            frees++;
        }
    }
    printf("mallocs=%llu frees=%llu\n", (unsigned long long)mallocs,
           (unsigned long long)frees);
    return 0;
}
