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

/// Every third hour along the bottom of a 24-slot chart, and the top of its scale at the left.
pub fn hour_ticks(left: f64, slot: f64, height: u32, top: f64) -> Vec<Tick> {
    let mut ticks: Vec<Tick> = (0..24)
        .step_by(3)
        .map(|h| Tick {
            x: at(left + (h as f64 + 0.5) * slot),
            y: format!("{}", height - 5),
            label: format!("{h:02}:00"),
        })
        .collect();
    ticks.push(Tick {
        x: "14".into(),
        y: "20".into(),
        label: format!("{top:.2}"),
    });
    ticks
}
