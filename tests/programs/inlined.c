/* An allocation inlined into its caller: 100 blocks of 4096 bytes from
 * make_node, inlined into build_tree, all still allocated at exit. */
#include <stdlib.h>

void *volatile sink;

static inline __attribute__((always_inline)) void *make_node(size_t n) {
    void *p = malloc(n);
    return p;
}

__attribute__((noinline)) void build_tree(void) {
    for (int i = 0; i < 100; i++) sink = make_node(4096);
}

int main(void) {
    build_tree();
    sink = 0;
    return 0;
}
