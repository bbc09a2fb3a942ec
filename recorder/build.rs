//! Links `librecord.so` so that its calls to functions it defines itself
//! (a hook calling another hook: `realloc(NULL, n)` is `malloc(n)`) bind
//! to its own definitions. Preloaded, the loader finds them first anyway;
//! loaded into a running program by `heapreplay attach`, with `RTLD_LOCAL`,
//! the global definitions would otherwise win and such calls go
//! unrecorded.

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-Bsymbolic-functions");
}
