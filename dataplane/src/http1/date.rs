//! The `date` header value (IMF-fixdate, RFC 9110 section 5.6.7), formatted once a second
//! per thread.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

thread_local! {
    static CACHED: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

/// Appends the current date.
pub fn write(out: &mut Vec<u8>) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHED.with_borrow_mut(|(at, text)| {
        if *at != now {
            *at = now;
            format(now, text);
        }
        out.extend_from_slice(&text[..]);
    });
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` for `secs` since the epoch (Howard Hinnant's
/// days-to-civil algorithm).
fn format(secs: u64, out: &mut [u8; 29]) {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = secs / 86400;
    let rem = secs % 86400;
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let two = |n: u64| [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8];
    let mut w = Vec::with_capacity(29);
    w.extend_from_slice(DAYS[(days % 7) as usize]);
    w.extend_from_slice(b", ");
    w.extend_from_slice(&two(day as u64));
    w.push(b' ');
    w.extend_from_slice(MONTHS[(month - 1) as usize]);
    w.push(b' ');
    let y = year.max(0) as u64;
    w.extend_from_slice(&two(y / 100));
    w.extend_from_slice(&two(y % 100));
    w.push(b' ');
    w.extend_from_slice(&two(h));
    w.push(b':');
    w.extend_from_slice(&two(m));
    w.push(b':');
    w.extend_from_slice(&two(s));
    w.extend_from_slice(b" GMT");
    if w.len() == out.len() {
        out.copy_from_slice(&w);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_imf_fixdate() {
        let mut out = [0u8; 29];
        super::format(784_111_777, &mut out);
        assert_eq!(&out, b"Sun, 06 Nov 1994 08:49:37 GMT");
        super::format(1_796_083_200, &mut out);
        assert_eq!(&out, b"Tue, 01 Dec 2026 00:00:00 GMT");
    }
}
