//! Every registered method runs on a real (tiny) model through the shared trait,
//! returns one finite score per token, and the laws that hold for each do hold.

use expnet::explain::{ExplainInput, Progress, CancelToken, METHOD_NAMES, create, is_cancelled};
use expnet::model::Model;
use std::path::Path;

fn model() -> Model {
    Model::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert")).unwrap()
}

#[test]
fn every_method_scores_every_token() {
    let m = model();
    let enc = m.encode("an unbelievably dull film").unwrap();
    let fwd = m.forward(&enc).unwrap();
    let input = ExplainInput::new(&m, &enc, &fwd, fwd.prediction.as_ref().unwrap().index);
    for name in METHOD_NAMES {
        let e = create(name).unwrap().explain(&input, &Progress::none()).unwrap();
        assert_eq!(e.scores.len(), enc.len(), "{name}");
        assert!(e.scores.iter().all(|v| v.is_finite()), "{name}: {:?}", e.scores);
        assert!(e.scores.iter().any(|v| *v != 0.0), "{name} gave all zeros");
    }
}

#[test]
fn kernel_shap_is_efficient_on_the_model() {
    let m = model();
    let enc = m.encode("an unbelievably dull film").unwrap();
    let fwd = m.forward(&enc).unwrap();
    let target = fwd.prediction.as_ref().unwrap().index;
    let input = ExplainInput::new(&m, &enc, &fwd, target);
    let e = create("kernel_shap").unwrap().explain(&input, &Progress::none()).unwrap();
    let keep_all = vec![true; enc.len()];
    let keep_none: Vec<bool> = enc.tokens.iter().map(|t| t.special).collect();
    let p = m.target_probabilities(&enc, &[keep_all, keep_none], target).unwrap();
    let sum: f32 = e.scores.iter().sum();
    assert!((sum - (p[0] - p[1])).abs() < 1e-4, "sum {sum} vs {}", p[0] - p[1]);
}

#[test]
fn slow_methods_stop_when_cancelled() {
    let m = model();
    let enc = m.encode("an unbelievably dull film with a plot").unwrap();
    let fwd = m.forward(&enc).unwrap();
    let input = ExplainInput::new(&m, &enc, &fwd, 0);
    let token = CancelToken::new();
    token.cancel();
    for name in ["integrated_gradients", "lime", "kernel_shap", "occlusion", "flow"] {
        let err = create(name).unwrap().explain(&input, &Progress::new(token.clone(), None)).unwrap_err();
        assert!(is_cancelled(&err), "{name}: {err}");
    }
}

#[test]
fn gradient_methods_share_one_backward_pass_and_charge_its_cost() {
    let m = model();
    let enc = m.encode("an unbelievably dull film").unwrap();
    let fwd = m.forward(&enc).unwrap();
    let target = fwd.prediction.as_ref().unwrap().index;
    let names = ["saliency", "grad_x_input", "chefer", "grad_sam"];
    let list: Vec<std::sync::Arc<dyn expnet::explain::Attribution>> = names.iter().map(|n| create(n).unwrap()).collect();
    // Told the list, the first method computes the full pass for all four.
    let shared = ExplainInput::new(&m, &enc, &fwd, target).for_methods(&list);
    for (i, name) in names.iter().enumerate() {
        let from_shared = create(name).unwrap().explain(&shared, &Progress::none()).unwrap();
        // Alone, saliency and grad×input take the pass without attention
        // gradients: the same scores up to float rounding.
        let alone = create(name).unwrap().explain(&ExplainInput::new(&m, &enc, &fwd, target), &Progress::none()).unwrap();
        let scale = alone.scores.iter().fold(0f32, |a, v| a.max(v.abs()));
        for (a, b) in from_shared.scores.iter().zip(&alone.scores) {
            assert!((a - b).abs() <= 1e-5 * scale.max(1e-6), "{name}: {a} shared vs {b} alone");
        }
        let reused = shared.take_reused_cost();
        // The first method computes the gradients; the others reuse them and are charged for it.
        assert_eq!(reused.is_zero(), i == 0, "{name}: reused cost {reused:?}");
        assert!(shared.take_reused_cost().is_zero(), "take resets the charge");
    }
    // Not told: saliency and grad×input share the cheap pass, Chefer then
    // computes the full one (not a reuse), and Grad-SAM reuses that.
    let untold = ExplainInput::new(&m, &enc, &fwd, target);
    for (i, name) in names.iter().enumerate() {
        create(name).unwrap().explain(&untold, &Progress::none()).unwrap();
        let reused = untold.take_reused_cost();
        assert_eq!(reused.is_zero(), i == 0 || i == 2, "{name} untold: reused cost {reused:?}");
    }
}
