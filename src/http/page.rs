//! `GET /`: the live page, one self-contained HTML file (its script and styles inline, no
//! fonts or outside scripts) that polls `GET /live` every second and draws its plots.

pub const HTML: &str = include_str!("page.html");
