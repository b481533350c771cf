//! Parameter validation.

use silica_sample::{Error, Sampler, SamplerParams};

fn rejected_field(params: SamplerParams) -> Option<&'static str> {
    match Sampler::new(params) {
        Err(Error::InvalidParam { name, reason, .. }) => {
            assert!(!reason.is_empty());
            Some(name)
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => None,
    }
}

#[test]
fn invalid_params_name_the_field() {
    let base = SamplerParams::with_seed(0);
    let cases = [
        (
            SamplerParams {
                temp: f32::NAN,
                ..base
            },
            "temp",
        ),
        (
            SamplerParams {
                temp: f32::INFINITY,
                ..base
            },
            "temp",
        ),
        (SamplerParams { top_p: 0.0, ..base }, "top_p"),
        (SamplerParams { top_p: 1.01, ..base }, "top_p"),
        (
            SamplerParams {
                top_p: f32::NAN,
                ..base
            },
            "top_p",
        ),
        (SamplerParams { min_p: -0.01, ..base }, "min_p"),
        (SamplerParams { min_p: 1.5, ..base }, "min_p"),
        (
            SamplerParams {
                min_p: f32::NAN,
                ..base
            },
            "min_p",
        ),
        (
            SamplerParams {
                repeat_penalty: 0.0,
                ..base
            },
            "repeat_penalty",
        ),
        (
            SamplerParams {
                repeat_penalty: -1.0,
                ..base
            },
            "repeat_penalty",
        ),
        (
            SamplerParams {
                repeat_penalty: f32::INFINITY,
                ..base
            },
            "repeat_penalty",
        ),
        (
            SamplerParams {
                frequency_penalty: f32::NAN,
                ..base
            },
            "frequency_penalty",
        ),
        (
            SamplerParams {
                presence_penalty: f32::NEG_INFINITY,
                ..base
            },
            "presence_penalty",
        ),
    ];
    for (params, field) in cases {
        assert_eq!(rejected_field(params), Some(field), "{params:?}");
    }
}

#[test]
fn boundary_values_are_accepted() {
    let base = SamplerParams::with_seed(0);
    let cases = [
        SamplerParams { temp: -1.0, ..base },
        SamplerParams { temp: 0.0, ..base },
        SamplerParams { top_p: 1.0, ..base },
        SamplerParams { min_p: 0.0, ..base },
        SamplerParams { min_p: 1.0, ..base },
        SamplerParams {
            repeat_penalty: 0.5,
            ..base
        },
        SamplerParams {
            frequency_penalty: -1.0,
            presence_penalty: -1.0,
            ..base
        },
        SamplerParams {
            top_k: usize::MAX,
            repeat_last_n: 0,
            ..base
        },
        SamplerParams::greedy(),
        SamplerParams::default(),
    ];
    for params in cases {
        assert_eq!(rejected_field(params), None, "{params:?}");
    }
}

#[test]
fn error_message_names_field_and_value() {
    let err = Sampler::new(SamplerParams {
        top_p: 2.0,
        ..SamplerParams::with_seed(0)
    })
    .expect_err("top_p 2 is invalid");
    let msg = err.to_string();
    assert!(msg.contains("top_p") && msg.contains('2'), "{msg}");
}
