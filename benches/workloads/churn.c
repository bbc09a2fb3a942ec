/*
 * churn N: N small malloc/free pairs through 336 distinct call stacks 10..30
 * frames deep (see churn.h), in one thread. Prints "mallocs=N frees=M".
 */
#include "churn.h"

static struct churn state;

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: churn N\n");
        return 2;
    }
    uint64_t n = churn_parse_count("N", argv[1]);
    uint64_t sum = churn_run(&state, n, 0x9e3779b97f4a7c15ull);
    /* The checksum keeps the work from being optimised away. */
    fprintf(stderr, "churn: checksum %llu\n", (unsigned long long)sum);
    printf("mallocs=%llu frees=%llu\n", (unsigned long long)state.mallocs,
           (unsigned long long)state.frees);
    return 0;
}
