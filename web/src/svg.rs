//! The pieces of the server-rendered SVG charts (bars and axis labels), as templates print
//! them: coordinates already formatted.

/// One bar with its hover title; `peak` marks the highlighted one.
pub struct Bar {
    pub x: String,
    pub y: String,
    pub w: String,
    pub h: String,
    pub peak: bool,
    pub label: String,
}

/// A label on an axis.
pub struct Tick {
    pub x: String,
    pub y: String,
    pub label: String,
}

/// A coordinate as the charts print it.
pub fn at(v: f64) -> String {
    format!("{v:.1}")
}
