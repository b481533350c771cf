//! The planner against llama.cpp's published results (`data/calibration-llamacpp.csv`).
#![allow(clippy::unwrap_used)]

use silica_plan::calibrate::{self, Fit};
use silica_plan::{Backend, output};

fn llamacpp_fits() -> Vec<Fit> {
    let obs = calibrate::parse_observations(calibrate::CALIBRATION_LLAMACPP_CSV, "calibration-llamacpp.csv")
        .unwrap();
    calibrate::fit_all(&obs, "test").unwrap()
}

#[test]
fn the_fit_reproduces_the_calibration_rows_and_prints_its_residuals() {
    let fits = llamacpp_fits();
    println!("{}", output::fits_markdown(&fits));
    let all: Vec<_> = fits.iter().flat_map(|f| f.residuals.iter().cloned()).collect();
    assert_eq!(all.len(), 64, "every measured row is fitted");
    let median = calibrate::median_abs(&all);
    assert!(median < 0.10, "median |error| {median}");
    let backends: Vec<Backend> = fits.iter().map(|f| f.efficiency.backend).collect();
    assert_eq!(backends, [Backend::Metal, Backend::Cuda, Backend::Vulkan]);
}

#[test]
fn the_built_in_tables_are_copies_of_shared_data() {
    let shared = silica_test_support::golden::shared_dir().join("data");
    for (name, built_in) in [
        ("hardware-specs.csv", silica_plan::hardware::HARDWARE_SPECS_CSV),
        ("calibration-llamacpp.csv", calibrate::CALIBRATION_LLAMACPP_CSV),
    ] {
        let path = shared.join(name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e} (set SILICA_SHARED_DIR)", path.display()));
        assert!(
            text == built_in,
            "crates/silica-plan/data/{name} differs from {}: copy it again",
            path.display()
        );
    }
}
