//! The shared backward pass of one input: saliency and grad×input read only
//! embedding gradients and get a cheaper pass without attention gradients,
//! unless a method in the same list reads those (Chefer, Grad-SAM); the
//! scores do not depend on which pass served them.

use expnet::explain::{Attribution, ExplainInput, Progress, create};
use expnet::model::Model;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name).display().to_string()
}

fn methods(names: &[&str]) -> Vec<Arc<dyn Attribution>> {
    names.iter().map(|m| create(m).unwrap()).collect()
}

/// Largest difference relative to the largest magnitude of `want`.
fn rel_diff(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    got.iter().zip(want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale
}

#[test]
fn embedding_gradients_skip_attention_gradients_unless_a_later_method_reads_them() {
    let model = Model::load(&fixture("tiny-bert")).unwrap();
    let enc = model.encode("the story was great but the end was far too long").unwrap();
    let fwd = model.forward(&enc).unwrap();
    let target = fwd.prediction.as_ref().unwrap().index;
    let layers = model.config().num_layers;

    // Alone: the cheap pass, then the full one when a method asks for it.
    let input = ExplainInput::new(&model, &enc, &fwd, target);
    let cheap = input.embedding_gradients().unwrap().embedding_grads.clone();
    let (g, _) = input.computed_gradients().unwrap();
    assert_eq!(g.attentions.layers, 0, "the hand-written pass left attention gradients out");
    let full = input.gradients().unwrap();
    assert_eq!(full.attention_grads.layers, layers);
    assert!(rel_diff(&cheap, &full.embedding_grads) < 1e-4, "embedding gradients differ: {}", rel_diff(&cheap, &full.embedding_grads));
    // Once the full pass exists it serves the cheap question too.
    assert_eq!(input.embedding_gradients().unwrap().attentions.layers, layers);

    // Told that Chefer follows: one full pass, at once.
    let both = methods(&["saliency", "chefer"]);
    let input = ExplainInput::new(&model, &enc, &fwd, target).for_methods(&both);
    assert_eq!(input.embedding_gradients().unwrap().attention_grads.layers, layers);
    let only_cheap = methods(&["saliency", "grad_x_input"]);
    let input = ExplainInput::new(&model, &enc, &fwd, target).for_methods(&only_cheap);
    assert_eq!(input.embedding_gradients().unwrap().attention_grads.layers, 0);

    // Seeds go to the pass they are: embedding-only ones serve saliency and
    // count as reused; the full pass is still computed for Chefer.
    let (seed, _) = input.computed_gradients().unwrap();
    let seeded = ExplainInput::new(&model, &enc, &fwd, target);
    seeded.seed_gradients(seed, Duration::from_millis(7));
    assert_eq!(seeded.embedding_gradients().unwrap().attentions.layers, 0);
    assert_eq!(seeded.take_reused_cost(), Duration::from_millis(7));
    assert_eq!(seeded.gradients().unwrap().attentions.layers, layers);
}

#[test]
fn saliency_and_grad_x_input_score_alike_from_either_pass() {
    for name in ["tiny-bert", "tiny-roberta", "tiny-deberta-v2"] {
        let model = Model::load(&fixture(name)).unwrap();
        let enc = model.encode("a fine film , if a little long").unwrap();
        let fwd = model.forward(&enc).unwrap();
        let target = fwd.prediction.as_ref().unwrap().index;
        for m in methods(&["saliency", "grad_x_input"]) {
            let cheap = m.explain(&ExplainInput::new(&model, &enc, &fwd, target), &Progress::none()).unwrap();
            let with = ExplainInput::new(&model, &enc, &fwd, target).for_methods(&methods(&["chefer"]));
            let full = m.explain(&with, &Progress::none()).unwrap();
            let d = rel_diff(&cheap.scores, &full.scores);
            assert!(d < 1e-4, "{name} {}: scores differ by {d} of the largest", m.name());
        }
    }
}
