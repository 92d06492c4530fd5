//! Giving freed memory back to the system.
//!
//! Decoding the Envoy API descriptors (for config translation) takes ~35 MB in tens of
//! thousands of small allocations. When they are dropped, glibc's malloc keeps the pages:
//! measured on a static proxy, 40 MB resident before and 4 MB after `malloc_trim(0)`. So the
//! descriptor cache is dropped after a quiet spell and the heap trimmed, once; the request
//! path never calls this. (mimalloc, tried instead, kept 74 MB.)

/// Returns the free memory of every malloc arena to the system (`malloc_trim(0)`), and the
/// pages of the encoded descriptor set (3.3 MB of the binary's read-only data, read while
/// decoding) and of the binary's code to the page cache.
///
/// The code: starting touches most of the binary's 8.8 MB of machine code (bootstrap and xDS
/// decoding, config translation, each fault mapping its 64 KB neighbourhood), 8 MB of the
/// 15 MB resident at start. Dropped here, once the config is applied, only the pages run
/// afterwards (the request path, the admin server, timers) come back, as minor faults from
/// the page cache, once.
pub fn return_free_memory() {
    xds_types::heap::release_free_memory();
    let blob = xds_types::descriptors::encoded();
    let page = 4096;
    let start = (blob.as_ptr() as usize).div_ceil(page) * page;
    let end = (blob.as_ptr() as usize + blob.len()) / page * page;
    if end > start {
        // SAFETY: the range lies inside a static in the binary's read-only data: a private
        // file mapping nobody writes. MADV_DONTNEED drops its pages from this process's
        // resident set; the next read faults them back in from the file, same bytes, so the
        // static stays valid. Only whole pages inside the blob are passed.
        #[allow(unsafe_code)]
        unsafe {
            madvise(start as *mut core::ffi::c_void, end - start, MADV_DONTNEED);
        }
    }
    if let Some((start, end)) = own_code() {
        // SAFETY: the range is the mapping of the binary's code, as /proc/self/maps gives it:
        // private, read and execute only, backed by the file. Nothing writes it (no text
        // relocations in a PIE Rust binary), so every page equals the file's, and
        // MADV_DONTNEED only unmaps them; executing one faults it back, same bytes.
        #[allow(unsafe_code)]
        unsafe {
            madvise(start as *mut core::ffi::c_void, end - start, MADV_DONTNEED);
        }
    }
}

/// The mapping holding this function's code (`r-xp`, from a file), from /proc/self/maps.
fn own_code() -> Option<(usize, usize)> {
    let here = own_code as fn() -> Option<(usize, usize)> as usize;
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|line| {
        let mut fields = line.split_ascii_whitespace();
        let (start, end) = fields.next()?.split_once('-')?;
        let (start, end) = (
            usize::from_str_radix(start, 16).ok()?,
            usize::from_str_radix(end, 16).ok()?,
        );
        let perms = fields.next()?;
        // offset, device, inode: an inode of 0 is an anonymous mapping.
        let inode = fields.nth(2)?;
        (start <= here && here < end && perms == "r-xp" && inode != "0").then_some((start, end))
    })
}

const MADV_DONTNEED: i32 = 4;

#[allow(unsafe_code)]
unsafe extern "C" {
    fn madvise(addr: *mut core::ffi::c_void, len: usize, advice: i32) -> i32;
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_code_is_the_mapping_of_the_binary_s_machine_code() {
        let (start, end) = super::own_code().expect("this function's mapping");
        let other = super::return_free_memory as fn() as usize;
        assert!(
            start <= other && other < end,
            "{start:#x}-{end:#x} {other:#x}"
        );
        assert_eq!(start % 4096, 0);
        assert_eq!(end % 4096, 0);
    }
}
