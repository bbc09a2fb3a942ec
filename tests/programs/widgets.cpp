// C++ allocations through operator new, new[], delete and delete[].
// In use at exit: make_widgets 1000 objects of 48 bytes, make_arrays 100 of
// 4096 bytes. churn_arrays allocates and frees 500 arrays of 1000 bytes.
// (No templates: Go 1.19's pprof finds C++ functions in DWARF only when the
// line table has no separate sequences for template instances.)

struct Widget {
    char data[48];
};

static Widget *widgets[1000];
static char *arrays[100];
char *volatile sinkp;

__attribute__((noinline)) void make_widgets() {
    for (int i = 0; i < 1000; i++) {
        widgets[i] = new Widget;
        sinkp = widgets[i]->data;
    }
}

__attribute__((noinline)) void make_arrays() {
    for (int i = 0; i < 100; i++) {
        arrays[i] = new char[4096];
        sinkp = arrays[i];
    }
}

__attribute__((noinline)) void churn_arrays() {
    for (int i = 0; i < 500; i++) {
        char *s = new char[1000];
        sinkp = s;
        delete[] s;
    }
}

int main() {
    make_widgets();
    make_arrays();
    churn_arrays();
    return 0;
}
