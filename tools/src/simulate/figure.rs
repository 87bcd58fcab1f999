//! Pictures of a run: one SVG per layout frame (drawn by [`crate::viz`]:
//! cells shaded by their cellapp's load, cut lines, where the entities
//! stand) and a chart of the
//! imbalance over time for every policy, plus an HTML page that plays the
//! frames of each policy side by side.

use std::fmt::Write;

use tessera_sim::score::{Frame, Score};

/// One frame as an SVG document: the layout drawn as `tessera viz` draws
/// it, titled with the time and the imbalance.
pub fn frame_svg(f: &Frame, title: &str) -> String {
    crate::viz::svg(
        &f.view,
        &format!("{title} · t={} s · imbalance {:.2}", f.second, f.imbalance),
    )
}

/// A line chart of every policy's imbalance over time, as SVG.
pub fn imbalance_svg(scores: &[(&str, &Score)], title: &str) -> String {
    let len = scores
        .iter()
        .map(|(_, s)| s.series.len())
        .max()
        .unwrap_or(1);
    let xs: Vec<f64> = (1..=len).map(|i| i as f64).collect();
    let series: Vec<(&str, Vec<f64>)> =
        scores.iter().map(|(p, s)| (*p, s.series.clone())).collect();
    chart_svg(title, "seconds", &xs, &series, false)
}

/// A line chart of imbalances (1 and up, the 1.2 mark dashed): one line
/// per named series over `xs`, as SVG; `marks` labels every x.
pub fn chart_svg(
    title: &str,
    x_label: &str,
    xs: &[f64],
    series: &[(&str, Vec<f64>)],
    marks: bool,
) -> String {
    const W: f32 = 640.0;
    const H: f32 = 280.0;
    const PAD: f32 = 40.0;
    let colours = ["#888888", "#d62728", "#1f77b4", "#2ca02c", "#9467bd"];
    let (lo, hi) = xs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(*v), b.max(*v))
        });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let top = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(1.5f64, f64::max)
        .min(8.0)
        .ceil() as f32;
    let x = |v: f64| PAD + (W - 2.0 * PAD) * ((v - lo) / span) as f32;
    let y = |v: f64| H - PAD - (H - 2.0 * PAD) * ((v as f32 - 1.0) / (top - 1.0)).clamp(0.0, 1.0);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12"><rect width="{W}" height="{H}" fill="white"/>"#
    );
    let _ = write!(s, r#"<text x="{PAD}" y="20">{title}</text>"#);
    // Axes, the 1.2 mark and a few gridlines.
    let mut v = 1.0f32;
    while v <= top + 1e-3 {
        let yy = y(f64::from(v));
        let _ = write!(
            s,
            r##"<line x1="{PAD}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="4" y="{:.1}">{v:.1}</text>"##,
            W - PAD,
            yy + 4.0,
        );
        v += if top > 4.0 { 1.0 } else { 0.5 };
    }
    let _ = write!(
        s,
        r##"<line x1="{PAD}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#2ca02c" stroke-dasharray="4 3"/>"##,
        W - PAD,
        yy = y(1.2)
    );
    if marks {
        for v in xs {
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{v}</text>"#,
                x(*v),
                H - PAD + 16.0
            );
        }
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{x_label}</text>"#,
            W - PAD,
            H - 6.0
        );
    } else {
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{x_label} ({lo}–{hi})</text>"#,
            W - PAD,
            H - 8.0
        );
    }
    for (k, (name, values)) in series.iter().enumerate() {
        let colour = colours[k % colours.len()];
        let pts: Vec<String> = xs
            .iter()
            .zip(values)
            .map(|(a, v)| format!("{:.1},{:.1}", x(*a), y(*v)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
            pts.join(" ")
        );
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" fill="{colour}">{name}</text>"#,
            W - PAD - 80.0,
            PAD + 14.0 * k as f32
        );
    }
    s.push_str("</svg>");
    s
}

/// The page that plays the policies' frames side by side, one column per
/// policy in one row, all on one time slider (`every` virtual seconds
/// between two frames).
pub fn page(title: &str, policies: &[(&str, usize)], every: u32) -> String {
    let mut cols = String::new();
    for (name, n) in policies {
        let _ = write!(
            cols,
            r#"<figure><figcaption>{name}</figcaption><img data-policy="{name}" data-frames="{n}" src="{name}/frame-0001.svg" alt="{name}"></figure>"#
        );
    }
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font-family:sans-serif;margin:1em}}
.row{{display:flex;flex-wrap:nowrap;gap:1em;align-items:flex-start}}
.row figure{{flex:1 1 0;min-width:0;margin:0}}
.row img{{width:100%;height:auto;display:block}}
figcaption{{font-weight:bold;text-align:center}}
#at{{width:60%}}
</style>
</head><body>
<h1>{title}</h1>
<p><button id="play">pause</button> <input id="at" type="range" min="1" value="1"> <span id="label"></span></p>
<div class="row">{cols}</div>
<p><img src="imbalance.svg" alt="imbalance over time"></p>
<script>
const imgs = [...document.querySelectorAll('img[data-policy]')];
const most = Math.max(...imgs.map(i => +i.dataset.frames));
const every = {every};
const at = document.getElementById('at'); at.max = most;
let playing = true;
function show(k) {{
  for (const i of imgs) {{
    const n = Math.min(k, +i.dataset.frames);
    i.src = i.dataset.policy + '/frame-' + String(n).padStart(4, '0') + '.svg';
  }}
  at.value = k;
  document.getElementById('label').textContent = (k * every) + ' s (frame ' + k + ' of ' + most + ')';
}}
at.oninput = () => show(+at.value);
document.getElementById('play').onclick = (e) => {{ playing = !playing; e.target.textContent = playing ? 'pause' : 'play'; }};
show(1);
setInterval(() => {{ if (playing) show(+at.value % most + 1); }}, 400);
</script>
</body></html>
"#
    )
}
