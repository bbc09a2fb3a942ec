/*
 * The allocation churn shared by churn.c and threads.c.
 *
 * Each step allocates one small block (16..512 bytes) at the bottom of a call
 * chain 10..30 functions deep, then either frees it at once or keeps it in a
 * ring of live blocks, freeing the block it evicts. Frees therefore
 * interleave with allocations, and about RING_LEN blocks stay live.
 *
 * The chain is made of two mutually recursive functions, step_a and step_b.
 * Which one is called at each level comes from a 4-bit pattern that rotates
 * one bit per level, so every (depth, pattern) pair is a different sequence
 * of return addresses: 21 depths x 16 patterns = 336 distinct stacks.
 * Nothing is inlined and no recursive call is in tail position, so the
 * chain really is that deep at -O2; built with -fomit-frame-pointer, only
 * .eh_frame can unwind it.
 *
 * Sizes are multiples of SIZE_STEP = 16, as malloc rounds them anyway,
 * which gives 32 x 336 distinct (size, stack) pairs. With -DSIZE_STEP=1
 * (every size from 16 to 512) the pairs run into the tens of thousands, and
 * the heaptrack 1.4.0 of Debian 12 aborts on them: heaptrack_interpret grows
 * to ~19 GB and dies of std::bad_alloc from churn 100000 on, leaving nothing
 * to compare against.
 *
 * The program counts its own malloc and free calls; a tool that changes
 * those counts is broken.
 */
#ifndef CHURN_H
#define CHURN_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOINLINE __attribute__((noinline, noclone))

#define MIN_DEPTH 10
#define DEPTHS 21 /* depths 10..30 */
#define PATTERNS 16
#define STACKS (DEPTHS * PATTERNS)
#define RING_LEN 4096
#define MIN_SIZE 16
#define MAX_SIZE 512
#ifndef SIZE_STEP
#define SIZE_STEP 16 /* 32 size classes */
#endif

/* One churning thread's state. */
struct churn {
    uint64_t rng;            /* xorshift64 state, never zero */
    uint64_t mallocs;        /* malloc calls made */
    uint64_t frees;          /* free calls made */
    void *ring[RING_LEN];    /* blocks kept alive */
};

static inline uint64_t churn_rand(struct churn *c)
{
    uint64_t x = c->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return c->rng = x;
}

/* Keeps the compiler from merging, reordering or tail-calling across it. */
#define BARRIER() __asm__ volatile("" ::: "memory")

/* The bottom of every chain: one malloc, and one free now or later. */
NOINLINE static uint64_t churn_leaf(struct churn *c)
{
    uint64_t r = churn_rand(c);
    size_t size = MIN_SIZE + SIZE_STEP * (size_t)(r % ((MAX_SIZE - MIN_SIZE) / SIZE_STEP + 1));
    unsigned char *p = malloc(size);
    if (p == NULL) {
        fprintf(stderr, "churn: malloc(%zu) failed\n", size);
        exit(2);
    }
    c->mallocs++;
    /* Touch both ends, as a real user of the block would. */
    p[0] = (unsigned char)r;
    p[size - 1] = (unsigned char)(r >> 8);
    uint64_t seen = p[0] + p[size - 1];
    if (r & (1u << 20)) {
        size_t slot = (size_t)(r >> 40) % RING_LEN;
        if (c->ring[slot] != NULL) {
            free(c->ring[slot]);
            c->frees++;
        }
        c->ring[slot] = p;
    } else {
        free(p);
        c->frees++;
    }
    return seen;
}

NOINLINE static uint64_t churn_step_a(struct churn *c, unsigned depth, unsigned pattern);
NOINLINE static uint64_t churn_step_b(struct churn *c, unsigned depth, unsigned pattern);

/* Goes one level deeper, through step_a or step_b as the pattern says. */
static inline uint64_t churn_descend(struct churn *c, unsigned depth, unsigned pattern)
{
    if (depth == 0)
        return churn_leaf(c);
    unsigned next = (pattern >> 1) | ((pattern & 1u) << 3);
    if (pattern & 1u)
        return churn_step_a(c, depth - 1, next);
    return churn_step_b(c, depth - 1, next);
}

NOINLINE static uint64_t churn_step_a(struct churn *c, unsigned depth, unsigned pattern)
{
    uint64_t v = churn_descend(c, depth, pattern);
    BARRIER();
    return v + 1;
}

NOINLINE static uint64_t churn_step_b(struct churn *c, unsigned depth, unsigned pattern)
{
    uint64_t v = churn_descend(c, depth, pattern);
    BARRIER();
    return v ^ 3;
}

/* Makes n malloc/free pairs, then frees what the ring still holds. */
NOINLINE static uint64_t churn_run(struct churn *c, uint64_t n, uint64_t seed)
{
    uint64_t sum = 0;
    c->rng = seed | 1;
    c->mallocs = c->frees = 0;
    memset(c->ring, 0, sizeof c->ring);
    for (uint64_t i = 0; i < n; i++) {
        unsigned stack = (unsigned)(churn_rand(c) % STACKS);
        unsigned depth = MIN_DEPTH - 1 + stack % DEPTHS; /* + the leaf = 10..30 */
        sum += churn_descend(c, depth, stack / DEPTHS);
        BARRIER();
    }
    for (size_t i = 0; i < RING_LEN; i++) {
        if (c->ring[i] != NULL) {
            free(c->ring[i]);
            c->frees++;
            c->ring[i] = NULL;
        }
    }
    return sum;
}

/* Parses a count such as 1000000 or 1e6; exits on anything else. */
static uint64_t churn_parse_count(const char *what, const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || v < 0 || v > 1e15) {
        fprintf(stderr, "churn: bad %s: %s\n", what, s);
        exit(2);
    }
    return (uint64_t)v;
}

#endif
