//! The cell view in a real browser: headless Chromium (Debian's package,
//! which `.ci/run` installs) against a live world. The page draws one cell
//! per cell of the layout, each labelled with its cellapp; a line moved by
//! hand changes the drawing without a reload; hovering a cell shows its
//! numbers. A screenshot is kept in `target/artifacts/cell-view.png`.
//!
//! Without Chromium the test says so and passes, unless
//! `TESSERA_BROWSER_TESTS=required` (as `.ci/run` sets), when it fails.

use serde_json::Value;
use std::time::Duration;
use tessera_tests::browser::{self, Browser};
use tessera_tests::{space_layout, Cluster, ClusterSpec};

/// Runs blocking browser work off the async runtime.
async fn with<T: Send + 'static>(
    b: Browser,
    f: impl FnOnce(&mut Browser) -> Result<T, String> + Send + 'static,
) -> (Browser, T) {
    tokio::task::spawn_blocking(move || {
        let mut b = b;
        let r = f(&mut b);
        match r {
            Ok(v) => (b, v),
            Err(e) => panic!("browser: {e}"),
        }
    })
    .await
    .expect("browser task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cell_view_draws_the_live_layout() {
    let Some(chromium) = browser::for_test() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(
        dir.path(),
        ClusterSpec {
            cellapps: 4,
            npcs: 60,
            size: 600.0,
            policy: "static",
            ..Default::default()
        },
    )
    .await;
    let admin = cluster.manager.admin_addr;
    // NPCs stand still, so the numbers the page shows can be compared with
    // the server's.
    for c in &cluster.cellapps {
        c.freeze(true);
    }
    let before = space_layout(admin).await;
    let cells = before["cells"].as_array().expect("cells").clone();
    assert_eq!(cells.len(), 4);

    let b = tokio::task::spawn_blocking(move || Browser::start(&chromium, 1280, 800))
        .await
        .expect("start task")
        .expect("chromium starts");
    let url = format!("http://{admin}/");
    let expected = cells.clone();
    let (b, ()) = with(b, move |b| {
        b.goto(&url)?;
        b.wait_for("document.querySelectorAll('g.cell').length === 4", 20)?;
        // Each cell drawn once, labelled with its owner, on its rectangle.
        for c in &expected {
            let id = &c["cell"];
            let app = &c["app"];
            let got = b.eval(&format!(
                "(() => {{ const g = [...document.querySelectorAll('g.cell')].filter(g => g.dataset.cell === '{id}'); \
                   if (g.length !== 1) return null; \
                   const r = g[0].querySelector('rect.cell-rect'); \
                   return {{ app: g[0].dataset.app, label: g[0].querySelector('.cell-label')?.textContent ?? '', \
                            x: +r.getAttribute('x'), w: +r.getAttribute('width'), h: +r.getAttribute('height') }}; }})()"
            ))?;
            if got.is_null() {
                return Err(format!("cell {id} is not drawn exactly once"));
            }
            if got["app"].as_str() != Some(app.to_string().as_str()) || !got["label"].as_str().unwrap_or("").contains(&format!("cellapp {app}")) {
                return Err(format!("cell {id}: {got}"));
            }
            let r = &c["rect"];
            let close = |a: &Value, b: f64| a.as_f64().is_some_and(|a| (a - b).abs() < 0.01);
            let (x0, x1) = (r["x0"].as_f64().unwrap_or(0.0), r["x1"].as_f64().unwrap_or(0.0));
            let (z0, z1) = (r["z0"].as_f64().unwrap_or(0.0), r["z1"].as_f64().unwrap_or(0.0));
            if !(close(&got["x"], x0) && close(&got["w"], x1 - x0) && close(&got["h"], z1 - z0)) {
                return Err(format!("cell {id} drawn at {got}, is {r}"));
            }
        }
        // A marker that a reload would wipe.
        b.eval("window.__kept = 42; document.body.dataset.epoch")?;
        Ok(())
    })
    .await;

    // Move the first line by hand; the page follows without reloading.
    let line = before["lines"][0].clone();
    let (lo, hi) = (
        line["range"][0].as_f64().expect("range"),
        line["range"][1].as_f64().expect("range"),
    );
    let pos = lo + (hi - lo) * 0.3;
    let answer = tessera_tests::admin(
        &cluster.data,
        admin,
        "POST",
        &format!("/api/spaces/1/lines/{}", line["line"]),
        &format!("{{\"pos\": {pos}}}"),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let after = space_layout(admin).await;
    let epoch = after["epoch"].clone();
    let moved: Vec<Value> = after["cells"].as_array().expect("cells").clone();
    let (b, ()) = with(b, move |b| {
        b.wait_for(&format!("document.body.dataset.epoch === '{epoch}'"), 20)?;
        if b.eval("window.__kept")? != 42 {
            return Err("the page reloaded".into());
        }
        let top = b.eval("window.tessera.lastLayout.bounds.z1")?.as_f64().unwrap_or(0.0);
        for c in &moved {
            let id = &c["cell"];
            let r = |k: &str| c["rect"][k].as_f64().unwrap_or(f64::NAN);
            let want = [r("x0"), top - r("z1"), r("x1") - r("x0"), r("z1") - r("z0")];
            let got = b.eval(&format!(
                "(() => {{ const e = document.querySelector('g.cell[data-cell=\"{id}\"] rect.cell-rect'); \
                   return ['x', 'y', 'width', 'height'].map(a => +e.getAttribute(a)); }})()"
            ))?;
            let got: Vec<f64> = got.as_array().into_iter().flatten().filter_map(Value::as_f64).collect();
            if got.len() != 4 || got.iter().zip(want).any(|(g, w)| (g - w).abs() > 0.01) {
                return Err(format!("cell {id} drawn at {got:?} after the move, is {want:?}"));
            }
        }
        Ok(())
    })
    .await;

    // Hovering a cell shows the server's numbers for it, once they have
    // settled after the move (two reads a second apart agree).
    let mut settled = space_layout(admin).await;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let next = space_layout(admin).await;
        let counts = |v: &Value| -> Vec<(Value, Value, Value)> {
            v["cells"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| (c["cell"].clone(), c["reals"].clone(), c["ghosts"].clone()))
                .collect()
        };
        let same = counts(&next) == counts(&settled);
        settled = next;
        if same {
            break;
        }
    }
    let (b, ()) = with(b, move |b| {
        let target = b.eval(
            "(() => { const g = document.querySelectorAll('g.cell')[1]; \
               const r = g.querySelector('rect.cell-rect').getBoundingClientRect(); \
               return { id: g.dataset.cell, x: r.left + r.width / 2, y: r.top + r.height / 3 }; })()",
        )?;
        let id = target["id"].as_str().ok_or("no cell id")?.to_string();
        let (x, y) = (target["x"].as_f64().unwrap_or(0.0), target["y"].as_f64().unwrap_or(0.0));
        b.mouse_to(x, y)?;
        b.wait_for(
            &format!(
                "(() => {{ const h = document.getElementById('hover'); \
                   return !!h && !h.hidden && h.querySelector('[data-field=cell]')?.textContent.trim() === '{id}'; }})()"
            ),
            10,
        )?;
        let cell = settled["cells"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["cell"].as_u64().is_some_and(|n| n.to_string() == id))
            .ok_or("hovered cell not in the layout")?;
        let (reals, ghosts, app) = (&cell["reals"], &cell["ghosts"], &cell["app"]);
        b.wait_for(
            &format!(
                "(() => {{ const f = n => document.querySelector('#hover [data-field=' + n + ']')?.textContent.trim(); \
                   return f('reals') === '{reals}' && f('ghosts') === '{ghosts}' && f('app') === '{app}'; }})()"
            ),
            10,
        )?;
        Ok(())
    })
    .await;

    let (_b, png) = with(b, |b| b.screenshot()).await;
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/artifacts");
    std::fs::create_dir_all(&out).expect("artifacts directory");
    std::fs::write(out.join("cell-view.png"), &png).expect("screenshot written");
    cluster.stop().await;
}
