//! `expnet train`: train ExpNet on human token rationales, with cached
//! attention features so that retraining does not re-run the encoder.

use crate::data::align::{example_piece_map, word_to_piece_labels};
use crate::data::{self, Split};
use crate::expnet::features::derive_shaped;
use crate::expnet::{ExampleFeatures, FeatureSpec, HeadPooling, Normalization, TrainConfig, TrainingSet, train};
use crate::model::Model;
use anyhow::Context;
use clap::Args;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Classifier whose attentions ExpNet learns from (default: the embedded one).
    #[arg(long)]
    pub model: Option<String>,
    /// Training data, comma-separated DATASET:PATH[#SPLIT][@MODEL] (default split train;
    /// e.g. hatexplain:../shared/data/hatexplain#dev, whose train split has no rationales).
    /// `@MODEL` reads that source's features from its own classifier (a folder
    /// or hub id; default --model), so one shape-free (`--depth-bins`) run mixes tasks and models.
    #[arg(long)]
    pub data: String,
    /// Validation data DATASET:PATH[#SPLIT][@MODEL] (default: 10% of the training examples).
    #[arg(long)]
    pub val: Option<String>,
    /// Output file (safetensors).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Hidden layer widths, comma-separated.
    #[arg(long, default_value = "64,32")]
    pub hidden: String,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Head pooling: per-head, sorted, stats.
    #[arg(long, default_value = "per-head")]
    pub pooling: String,
    /// Feature normalisation: global, z, rank.
    #[arg(long, default_value = "global")]
    pub normalization: String,
    /// Neighbour-aware variant: also see the features of N tokens on each side.
    #[arg(long, default_value_t = 0)]
    pub neighbours: usize,
    /// Ablation: leave out feature groups or layers, comma-separated
    /// (cls_to_token, token_to_cls, received, self_attn, relative_position,
    /// special_flag, L0…L{n-1}); reuses the full feature cache.
    #[arg(long)]
    pub drop: Option<String>,
    /// Shape-free features for a `transfer` ExpNet that applies to any encoder:
    /// layers mapped to N relative-depth bins, heads pooled by mean/max/std
    /// (implies --pooling stats). 0 = per-layer features for this model only.
    #[arg(long, default_value_t = 0)]
    pub depth_bins: usize,
    /// Decomposition feature groups per depth bin, comma-separated: value_norm
    /// (attention × transformed value norm), alti, globenc (the token's share of
    /// [CLS], per layer and rolled out); needs --depth-bins. Cached per group.
    #[arg(long)]
    pub decomposition: Option<String>,
    /// Gradient signals of the one shared backward pass, one column each,
    /// comma-separated: saliency, grad_x_input, grad_sam, chefer (or all);
    /// each source read through its own classifier for its predicted class.
    /// Costs one backward pass per text at scoring time. Cached.
    #[arg(long)]
    pub gradient: Option<String>,
    /// Per-input normalisation of the --gradient columns: z or rank
    /// (default: --normalization).
    #[arg(long)]
    pub gradient_normalization: Option<String>,
    /// Start from one feature column and learn a correction to it (a residual
    /// ExpNet whose untrained output ranks tokens as that column does): `alti`
    /// or `globenc` = that method's score (the last depth bin's rolled-out share;
    /// needs --decomposition with it and --depth-bins), or any feature name.
    #[arg(long)]
    pub prior: Option<String>,
    /// Feature cache folder.
    #[arg(long, default_value = ".expnet-cache")]
    pub cache: PathBuf,
}

/// The feature column `--prior` names: a method's score or a feature name.
pub(crate) fn prior_column(prior: &str, depth_bins: usize) -> String {
    match prior {
        "alti" | "globenc" if depth_bins > 0 => format!("{prior}.depth{}of{depth_bins}.rollout", depth_bins - 1),
        g if crate::expnet::grad_features::SIGNALS.contains(&g) => format!("gradient.{g}"),
        other => other.to_string(),
    }
}

pub(crate) fn parse_spec(s: &str) -> anyhow::Result<(String, Split)> {
    match s.rsplit_once('#') {
        Some((spec, split)) => Ok((spec.to_owned(), split.parse()?)),
        None => Ok((s.to_owned(), Split::Train)),
    }
}

/// Feature spec from the command-line choices.
pub fn feature_spec(layers: usize, heads: usize, pooling: &str, normalization: &str) -> anyhow::Result<FeatureSpec> {
    let mut spec = FeatureSpec::new(layers, heads);
    spec.head_pooling = match pooling {
        "per-head" => HeadPooling::PerHead,
        "sorted" => HeadPooling::Sorted,
        "stats" => HeadPooling::Stats,
        o => anyhow::bail!("unknown --pooling {o} (valid: per-head, sorted, stats)"),
    };
    spec.normalization = match normalization {
        "global" => Normalization::Global,
        "z" => Normalization::PerSentenceZ,
        "rank" => Normalization::PerSentenceRank,
        o => anyhow::bail!("unknown --normalization {o} (valid: global, z, rank)"),
    };
    Ok(spec)
}

/// Switches off the groups and layers named in a `--drop` list.
pub fn apply_drop(spec: &mut FeatureSpec, drop: &str) -> anyhow::Result<()> {
    for item in drop.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item {
            "cls_to_token" => spec.cls_to_token = false,
            "token_to_cls" => spec.token_to_cls = false,
            "received" => spec.received = false,
            "self_attn" => spec.self_attn = false,
            "relative_position" => spec.relative_position = false,
            "special_flag" => spec.special_flag = false,
            l if l.starts_with('L') && l[1..].parse::<usize>().is_ok() => {
                let l: usize = l[1..].parse()?;
                anyhow::ensure!(l < spec.layers, "--drop {item}: the model has layers L0..L{}", spec.layers - 1);
                spec.dropped_layers.push(l);
            }
            o => anyhow::bail!(
                "unknown --drop item {o} (valid: cls_to_token, token_to_cls, received, self_attn, \
                 relative_position, special_flag, L0..L{})",
                spec.layers - 1
            ),
        }
    }
    spec.validate()
}

/// Features of every example with a rationale (from the cache when present).
/// Raw features (every group, layer and head) are extracted and cached once
/// per (model, data, split) and then derived for `spec`, so pooling,
/// normalisation and ablation variants never re-run the encoder.
pub fn features_for(model: &Model, spec_str: &str, spec: &FeatureSpec, cache: &Path) -> anyhow::Result<TrainingSet> {
    // Raw rows always come from this model's own shape (a shape-free spec
    // may have been built for another one).
    let (layers, heads) = (model.num_layers(), model.num_heads());
    let raw_spec = FeatureSpec::new(layers, heads);
    let set = raw_features_for(model, spec_str, &raw_spec, cache)?;
    if *spec == raw_spec {
        return Ok(set);
    }
    let ids: Vec<String> = set.examples.iter().map(|e| e.id.clone()).collect();
    let decomposition = super::train_decomp::decomposition_rows(model, spec_str, spec, &ids, cache)?;
    let gradient = super::train_grad::gradient_rows(model, spec_str, spec, &ids, cache)?;
    let mut derived = TrainingSet::new(spec.clone(), &set.model_id, &set.data_spec);
    for (i, mut ex) in set.examples.into_iter().enumerate() {
        let mut rows = derive_shaped(spec, &ex.features, &ex.special, layers, heads)?;
        if let Some(raw) = decomposition.get(i) {
            let columns = crate::expnet::decomp_features::derive(spec, raw, &ex.special, layers, heads)
                .with_context(|| format!("example {}", ex.id))?;
            rows.iter_mut().zip(columns).for_each(|(r, c)| r.extend(c));
        }
        if let Some(raw) = gradient.get(i) {
            let columns = crate::expnet::grad_features::derive(spec, raw, &ex.special).with_context(|| format!("example {}", ex.id))?;
            rows.iter_mut().zip(columns).for_each(|(r, c)| r.extend(c));
        }
        ex.features = rows;
        derived.push(ex)?;
    }
    Ok(derived)
}

/// The file under `cache` that holds `prefix` rows of `spec_str` read through
/// `model` (attention features, decomposition groups, gradient signals), one
/// key for all three: the model's fingerprint as well as its name, so a
/// classifier retrained into the same folder is never read through its
/// predecessor's cached rows; `tag` tells apart what else differs.
pub(crate) fn cache_file(cache: &Path, prefix: &str, model: &Model, spec_str: &str, tag: &str) -> anyhow::Result<std::path::PathBuf> {
    let (data_spec, split) = parse_spec(spec_str)?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (model.name.as_str(), model.fingerprint(), data_spec.as_str(), split.to_string(), tag).hash(&mut h);
    Ok(cache.join(format!("{prefix}-{:016x}.safetensors", h.finish())))
}

fn raw_features_for(model: &Model, spec_str: &str, spec: &FeatureSpec, cache: &Path) -> anyhow::Result<TrainingSet> {
    let (data_spec, split) = parse_spec(spec_str)?;
    let file = cache_file(cache, "features", model, spec_str, &serde_json::to_string(spec)?)?;
    if file.is_file()
        && let Ok(set) = TrainingSet::load(&file)
    {
        eprintln!("features: {} examples from cache {}", set.examples.len(), file.display());
        return Ok(set);
    }
    let ds = data::load(&data_spec, split)?;
    let mut set = TrainingSet::new(spec.clone(), &model.name, spec_str);
    let with: Vec<_> = ds.examples.iter().filter(|e| e.rationale.is_some()).collect();
    anyhow::ensure!(!with.is_empty(), "{spec_str} has no examples with rationales (hint: HateXplain's train split has none; use #dev)");
    for (i, ex) in with.iter().enumerate() {
        if i % 50 == 0 {
            let _ = write!(std::io::stderr(), "\rextracting features {spec_str}: {i}/{}   ", with.len());
        }
        let enc = encode_example(model, ex)?;
        let fwd = model.forward(&enc)?;
        let gold: Vec<f32> = ex.binary_rationale(0.5).expect("filtered").iter().map(|&b| b as u8 as f32).collect();
        let labels = word_to_piece_labels(&gold, &example_piece_map(ex, &enc.tokens));
        set.push(ExampleFeatures::from_attentions(spec, &ex.id, &fwd.attentions, &enc.special_mask(), labels)?)?;
    }
    eprintln!("\rextracted features of {} examples from {spec_str}            ", set.examples.len());
    std::fs::create_dir_all(cache).with_context(|| format!("cannot create cache folder {}", cache.display()))?;
    set.save(&file)?;
    Ok(set)
}

/// The encoding of one example (text, or premise and hypothesis).
pub(crate) fn encode_example(model: &Model, ex: &data::Example) -> anyhow::Result<crate::model::Encoding> {
    match ex.text_pair() {
        Some(p) => model.encode_pair(&ex.text(), &p),
        None => model.encode(&ex.text()),
    }
}

pub fn run(args: &TrainArgs, load_model: impl FnOnce(Option<&str>) -> anyhow::Result<Model>) -> anyhow::Result<()> {
    super::check_training(args.epochs, 30, args.lr, "1e-3")?;
    let model = load_model(args.model.as_deref())?;
    let mut spec = feature_spec(model.num_layers(), model.num_heads(), &args.pooling, &args.normalization)?;
    if args.depth_bins > 0 {
        // Groups may still be dropped; layers may not (validate says so).
        spec = FeatureSpec::shape_free(model.num_layers(), model.num_heads(), args.depth_bins, spec.normalization);
    }
    if let Some(groups) = &args.decomposition {
        spec.decomposition = crate::expnet::DecompositionGroups::parse(groups)?;
        spec.decomposition.check_model(&model)?;
    }
    if let Some(list) = &args.gradient {
        spec.gradient = crate::expnet::GradientGroups::parse(list)?;
        anyhow::ensure!(
            spec.gradient.is_off() || model.is_classifier(),
            "--gradient reads the backward pass of a classifier, but {} is a bare encoder",
            model.name
        );
    }
    if let Some(n) = &args.gradient_normalization {
        anyhow::ensure!(!spec.gradient.is_off(), "--gradient-normalization needs --gradient");
        spec.gradient.normalization = Some(match n.as_str() {
            "z" => Normalization::PerSentenceZ,
            "rank" => Normalization::PerSentenceRank,
            "global" => Normalization::Global,
            o => anyhow::bail!("unknown --gradient-normalization {o} (valid: z, rank, global)"),
        });
    }
    if let Some(drop) = &args.drop {
        apply_drop(&mut spec, drop)?;
    }
    spec.validate()?;
    let mut others = SourceModels::default();
    let mut train_set = TrainingSet::new(spec.clone(), &model.name, &args.data);
    for part in args.data.split(',') {
        let (data, source_model) = others.resolve(part.trim(), &model, &spec)?;
        let set = features_for(source_model, data, &spec, &args.cache)?;
        for ex in set.examples {
            train_set.push(ex)?;
        }
    }
    let (train_set, val_set) = match &args.val {
        Some(v) => {
            let (data, source_model) = others.resolve(v.trim(), &model, &spec)?;
            (train_set, features_for(source_model, data, &spec, &args.cache)?)
        }
        None => train_set.split(0.1, args.seed)?,
    };
    let hidden = args
        .hidden
        .split(',')
        .map(|s| s.trim().parse::<usize>().with_context(|| format!("--hidden {s} is not a number")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut cfg = TrainConfig { epochs: args.epochs, lr: args.lr, seed: args.seed, ..Default::default() };
    cfg.net.hidden = hidden;
    cfg.net.neighbour_window = args.neighbours;
    cfg.net.prior = args.prior.as_deref().map(|p| prior_column(p, spec.depth_bins));
    eprintln!("training ExpNet on {} examples ({} pieces), validating on {}", train_set.examples.len(), train_set.pieces(), val_set.examples.len());
    let mut on_epoch = |r: crate::expnet::EpochReport| {
        eprintln!(
            "epoch {}/{}: loss {:.4}, val F1@k {:.4} (best {:.4} at {}) {:.0} pieces/s{}",
            r.epoch,
            r.max_epochs,
            r.train_loss,
            r.val_f1.unwrap_or(f32::NAN),
            r.best_val_f1.unwrap_or(f32::NAN),
            r.best_epoch,
            r.pieces_per_sec,
            if r.stopping { " — stopping" } else { "" }
        );
    };
    let mut net = train(&train_set, Some(&val_set), &cfg, &mut on_epoch)?;
    let mut names = vec![model.name.clone()];
    names.extend(others.models.iter().map(|(n, _)| n.clone()));
    net.info.model_id = Some(names.join(" + "));
    net.info.hidden_size = Some(model.config().hidden_size);
    net.info.command = Some(std::env::args().collect::<Vec<_>>().join(" "));
    net.info.model_fingerprint = Some(model.fingerprint().to_owned());
    // A shape-free ExpNet is meant for models it was not trained on.
    net.info.kind = Some(if spec.is_shape_free() {
        crate::expnet::ExplainerKind::Transfer
    } else {
        crate::expnet::ExplainerKind::Rationales
    });
    net.save(&args.out)?;
    eprintln!("saved {}", args.out.display());
    Ok(())
}

/// The classifiers named by `@MODEL` in training sources, each loaded once.
#[derive(Default)]
struct SourceModels {
    models: Vec<(String, Model)>,
}

impl SourceModels {
    /// Splits `DATASET:PATH[#SPLIT][@MODEL]` and returns the data part with
    /// the model whose features it is read from (`default` without `@`).
    fn resolve<'a>(&'a mut self, part: &'a str, default: &'a Model, spec: &FeatureSpec) -> anyhow::Result<(&'a str, &'a Model)> {
        let Some((data, name)) = part.rsplit_once('@') else { return Ok((part, default)) };
        anyhow::ensure!(!name.trim().is_empty(), "{part}: nothing after '@' (hint: DATASET:PATH@MODEL_FOLDER)");
        if name == default.name {
            return Ok((data, default));
        }
        if !self.models.iter().any(|(n, _)| n == name) {
            let m = Model::load(name).with_context(|| format!("cannot load the model of training source {part}"))?;
            anyhow::ensure!(
                spec.is_shape_free() || (m.num_layers() == spec.layers && m.num_heads() == spec.heads),
                "{name} has {}x{} layers x heads, the features are for {}x{} (hint: --depth-bins N makes them shape-free)",
                m.num_layers(),
                m.num_heads(),
                spec.layers,
                spec.heads
            );
            self.models.push((name.to_owned(), m));
        }
        let m = &self.models.iter().find(|(n, _)| n == name).expect("just loaded").1;
        Ok((data, m))
    }
}
