//! The report page `tessera sim --compare` writes, in a real browser: the
//! policies' frames stand side by side in one row, on one time slider that
//! moves every policy's frame together. Skipped without Chromium, unless
//! `TESSERA_BROWSER_TESTS=required` (as `.ci/run` sets).

use serde_json::Value;
use tessera_tests::browser::{self, Browser};
use tessera_tools::simulate::{self, SimArgs};

#[test]
fn the_report_shows_the_policies_side_by_side_on_one_slider() {
    let Some(chromium) = browser::for_test() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    simulate::run(
        SimArgs {
            scenario: "hotspot".into(),
            replay: None,
            sweep: None,
            print_scenario: false,
            policy: "tessera".into(),
            compare: true,
            cellapps: Some(4),
            entities: Some(2_000),
            clients: None,
            duration: Some(20),
            seed: 1,
            size: None,
            frame_every: 5,
            out: out.clone(),
            quiet: true,
        },
        tessera_demo::game(),
    )
    .expect("tessera sim runs");

    let mut b = Browser::start(&chromium, 1280, 800).expect("chromium starts");
    b.goto(&format!("file://{}", out.join("index.html").display()))
        .expect("the page opens");
    b.wait_for(
        "[...document.querySelectorAll('img[data-policy]')].every(i => i.complete && i.naturalWidth > 0)",
        20,
    )
    .expect("every policy's frame loads");
    // Three columns in one row, left to right, inside the window.
    let boxes = b
        .eval(
            "JSON.stringify([...document.querySelectorAll('img[data-policy]')].map(i => { \
             const r = i.getBoundingClientRect(); \
             return [i.dataset.policy, r.left, r.top, r.right]; }))",
        )
        .expect("layout");
    let boxes: Vec<(String, f64, f64, f64)> =
        serde_json::from_str(boxes.as_str().expect("a string")).expect("boxes");
    let names: Vec<&str> = boxes.iter().map(|b| b.0.as_str()).collect();
    assert_eq!(names, ["static", "bigworld", "tessera"]);
    for w in boxes.windows(2) {
        assert!((w[0].2 - w[1].2).abs() < 1.0, "not in one row: {boxes:?}");
        assert!(w[0].3 <= w[1].1, "overlapping or out of order: {boxes:?}");
    }
    assert!(
        boxes.iter().all(|b| b.3 <= 1280.0),
        "wider than the window: {boxes:?}"
    );
    // One slider over the frames; moving it moves every policy.
    assert_eq!(
        b.eval("document.querySelectorAll('input[type=range]').length")
            .ok(),
        Some(Value::from(1))
    );
    assert_eq!(
        b.eval("+document.getElementById('at').max").ok(),
        Some(Value::from(4))
    );
    b.eval(
        "document.getElementById('play').click(); \
         const slider = document.getElementById('at'); slider.value = 3; slider.oninput(); 0",
    )
    .expect("the slider moves");
    let srcs = b
        .eval("JSON.stringify([...document.querySelectorAll('img[data-policy]')].map(i => i.getAttribute('src')))")
        .expect("sources");
    let srcs: Vec<String> = serde_json::from_str(srcs.as_str().expect("a string")).expect("srcs");
    assert_eq!(
        srcs,
        [
            "static/frame-0003.svg",
            "bigworld/frame-0003.svg",
            "tessera/frame-0003.svg"
        ]
    );
    let label = b
        .eval("document.getElementById('label').textContent")
        .expect("label");
    assert_eq!(label.as_str(), Some("15 s (frame 3 of 4)"));
}
