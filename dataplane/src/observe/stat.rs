//! One stat as the admin API serves it: its Envoy name, its value, and whether it is a gauge
//! (a level, as `upstream_rq_active`) or a counter (a running total). `/stats` shows the name
//! and value; `/stats/prometheus` (prometheus.rs) also needs the kind.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub name: String,
    pub value: u64,
    pub gauge: bool,
}

impl Stat {
    pub fn counter(name: impl Into<String>, value: u64) -> Self {
        Stat {
            name: name.into(),
            value,
            gauge: false,
        }
    }

    pub fn gauge(name: impl Into<String>, value: u64) -> Self {
        Stat {
            name: name.into(),
            value,
            gauge: true,
        }
    }
}
