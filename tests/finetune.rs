//! Fine-tuning end to end on a toy task with the tiny fixture encoder: the loss
//! falls, the classifier learns, and the saved folder reloads with identical logits.

use expnet::finetune::{FinetuneConfig, FinetuneEvent, LabelledText, Trainable, accuracy, finetune};
use expnet::model::Model;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

fn toy_data() -> Vec<LabelledText> {
    let good = ["good", "great", "fun", "nice"];
    let bad = ["bad", "dull", "boring", "awful"];
    let mut out = Vec::new();
    for (i, w) in good.iter().chain(bad.iter()).enumerate() {
        for tpl in ["the film was {}", "a {} movie", "{} acting and story", "it is {}"] {
            out.push(LabelledText { text: tpl.replace("{}", w), pair: None, label: (i >= good.len()) as usize });
        }
    }
    out
}

#[test]
fn finetune_learns_a_toy_task_and_saves_a_loadable_folder() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert-encoder");
    let labels = vec!["positive".to_string(), "negative".to_string()];
    let t = Trainable::from_base(&base, &labels, 7).unwrap();
    let data = toy_data();
    let cfg = FinetuneConfig { epochs: 12, lr: 3e-3, batch_size: 8, max_len: 16, seed: 7, dropout: 0.0, ..Default::default() };
    let stop = Arc::new(AtomicBool::new(false));
    let mut losses = Vec::new();
    let mut on_event = |e: FinetuneEvent| {
        if let FinetuneEvent::Epoch { train_loss, .. } = e {
            losses.push(train_loss)
        }
    };
    let out = tempfile::tempdir().unwrap();
    let out_path = out.path().to_path_buf();
    let mut save = |t: &Trainable| t.save(&out_path, false, Some(&base));
    let report = finetune(&t, &data, &data, &cfg, &stop, &mut on_event, &mut save).unwrap();
    assert!(losses.last().unwrap() < &(losses[0] * 0.5), "loss did not fall: {losses:?}");
    assert!(report.best_dev_accuracy >= 0.9, "accuracy {}", report.best_dev_accuracy);

    // The saved folder is a classifier transformers' layout describes; it reloads.
    let reloaded = Model::load_dir(out.path()).unwrap();
    assert!(reloaded.is_classifier());
    assert_eq!(reloaded.labels(), labels.as_slice());
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "BertForSequenceClassification");
    let tok: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.path().join("tokenizer.json")).unwrap()).unwrap();
    assert!(tok["padding"].is_null() && tok["truncation"].is_null());
    let acc = accuracy(&reloaded, &data, 16).unwrap();
    assert!((acc - report.best_dev_accuracy).abs() < 1e-9 || report.best_epoch != report.epochs_run);
    let enc = reloaded.encode("a great movie").unwrap();
    let live = t.model.forward(&enc).unwrap().prediction.unwrap();
    let saved = reloaded.forward(&enc).unwrap().prediction.unwrap();
    if report.best_epoch == report.epochs_run {
        for (a, b) in live.logits.iter().zip(&saved.logits) {
            assert!((a - b).abs() < 1e-5);
        }
    }
}

#[test]
fn finetune_stops_cleanly_when_interrupted() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert-encoder");
    let t = Trainable::from_base(&base, &["a".into(), "b".into()], 1).unwrap();
    let stop = Arc::new(AtomicBool::new(true));
    let mut saved = 0;
    let report = finetune(&t, &toy_data(), &[], &FinetuneConfig::default(), &stop, &mut |_| {}, &mut |_| {
        saved += 1;
        Ok(())
    })
    .unwrap();
    assert!(report.interrupted && report.epochs_run == 0 && saved == 0);
}
