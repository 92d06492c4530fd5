//! Giving the heap's free memory back to the system.
//!
//! glibc's malloc keeps the pages of freed memory for reuse: after a burst (a controlplane's
//! initial sync to 10,000 proxies, a dataplane's one-off decoding of the API descriptors) a
//! process stays at its peak resident size though most of it is free. Both programs call
//! this after such bursts, never on a request path. Shared here because both need it and this
//! is the crate both depend on.

/// Returns the free memory of every malloc arena to the system (`malloc_trim(0)`). Takes a
/// few milliseconds per hundred megabytes returned.
pub fn release_free_memory() {
    // SAFETY: malloc_trim only walks glibc's own arenas under their locks; it takes no
    // pointers from us and is documented as safe to call at any time from any thread.
    #[allow(unsafe_code)]
    unsafe {
        malloc_trim(0);
    }
}

#[allow(unsafe_code)]
unsafe extern "C" {
    fn malloc_trim(pad: usize) -> i32;
}
