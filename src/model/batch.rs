//! Several texts in one encoder run: padded to the longest, with an attention
//! mask, then cut back to each text's own length. `explain --input` uses it so
//! that a corpus pays one forward pass (and one backward pass) per batch
//! instead of one per text; results match [`Model::forward`] /
//! [`Model::gradients`] up to float rounding (padded keys get probability 0).

use super::encoder::{EncoderInput, RunMode};
use super::{Attentions, Encoding, ForwardOutput, Gradients, Model, Prediction};
use anyhow::Context;
use candle_core::{DType, Tensor};

/// Per-text slices of a `[batch, heads, len, len]` attention tensor per layer,
/// each cut to `[heads, n, n]` for that text's `n` tokens.
fn split_attentions(layers: &[Tensor], lengths: &[usize], heads: usize) -> anyhow::Result<Vec<Attentions>> {
    let mut per_text: Vec<Vec<f32>> = lengths.iter().map(|&n| Vec::with_capacity(layers.len() * heads * n * n)).collect();
    for a in layers {
        let (b, h, len, _) = a.dims4()?;
        anyhow::ensure!(b == lengths.len() && h == heads, "attention tensor has shape {:?}", a.dims());
        let flat = a.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        for (t, (&n, out)) in lengths.iter().zip(per_text.iter_mut()).enumerate() {
            for head in 0..h {
                let base = (t * h + head) * len * len;
                for q in 0..n {
                    out.extend_from_slice(&flat[base + q * len..base + q * len + n]);
                }
            }
        }
    }
    let l = layers.len();
    per_text.into_iter().zip(lengths).map(|(data, &n)| Attentions::new(l, heads, n, data)).collect()
}

/// Rows `[batch, len, width]` → per text its first `n` rows, flat `[n * width]`.
fn split_rows(t: &Tensor, lengths: &[usize]) -> anyhow::Result<Vec<Vec<f32>>> {
    let (b, len, width) = t.dims3()?;
    anyhow::ensure!(b == lengths.len(), "batch of {b} rows for {} texts", lengths.len());
    let flat = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    Ok(lengths.iter().enumerate().map(|(i, &n)| flat[i * len * width..(i * len + n) * width].to_vec()).collect())
}

impl Model {
    fn batch_of(&self, encs: &[&Encoding]) -> anyhow::Result<(Tensor, Tensor, Tensor, Option<Tensor>, Vec<usize>)> {
        let ids: Vec<&[u32]> = encs.iter().map(|e| e.ids.as_slice()).collect();
        let types: Vec<&[u32]> = encs.iter().map(|e| e.type_ids.as_slice()).collect();
        let (ids, types, pos, mask) = self.batch_input(&ids, &types)?;
        Ok((ids, types, pos, mask, encs.iter().map(|e| e.len()).collect()))
    }

    /// [`Model::forward`] for several texts in one padded, masked run; one
    /// output per text, cut to its own length.
    pub fn forward_batch(&self, encs: &[&Encoding]) -> anyhow::Result<Vec<ForwardOutput>> {
        self.forward_batch_with(encs, false)
    }

    /// [`Model::forward_batch`] for readers of nothing in the last layer but
    /// the first query's attention row and the prediction (see
    /// [`crate::explain::Attribution::reads_first_query_of_last_layer_only`]):
    /// the rest of that layer may be skipped, its attention and hidden-state
    /// rows after the first are then NaN.
    pub fn forward_batch_first_query(&self, encs: &[&Encoding]) -> anyhow::Result<Vec<ForwardOutput>> {
        self.forward_batch_with(encs, true)
    }

    fn forward_batch_with(&self, encs: &[&Encoding], first_query: bool) -> anyhow::Result<Vec<ForwardOutput>> {
        if encs.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, types, pos, mask, lengths) = self.batch_of(encs)?;
        let embeds = self.encoder.embed_words(&ids)?;
        let input = EncoderInput { word_embeds: &embeds, position_ids: &pos, type_ids: &types, attention_mask: mask.as_ref() };
        let out = if first_query { self.encoder.forward_first_query(&input)? } else { self.encoder.forward(&input, RunMode::INFERENCE)? };
        let mut attentions = split_attentions(&out.attentions, &lengths, self.num_heads())?.into_iter();
        let mut hidden: Vec<Vec<Vec<Vec<f32>>>> = vec![Vec::with_capacity(out.hidden_states.len()); encs.len()];
        for h in &out.hidden_states {
            let width = h.dim(2)?;
            for (t, rows) in split_rows(h, &lengths)?.into_iter().enumerate() {
                hidden[t].push(rows.chunks(width).map(<[f32]>::to_vec).collect());
            }
        }
        let logits: Option<Vec<Vec<f32>>> = match &out.logits {
            Some(l) => Some(l.to_dtype(DType::F32)?.to_vec2()?),
            None => None,
        };
        let mut outputs = Vec::with_capacity(encs.len());
        for (t, hidden_states) in hidden.into_iter().enumerate() {
            let prediction = logits.as_ref().map(|l| Prediction::from_logits(self.labels(), l[t].clone()));
            outputs.push(ForwardOutput { prediction, attentions: attentions.next().context("missing attentions")?, hidden_states });
        }
        Ok(outputs)
    }

    /// [`Model::gradients`] for several texts in one padded, masked run: the
    /// backward pass of the sum of each text's `targets[i]` logit. Texts do not
    /// see each other (padding is masked), so each text's part of the gradient
    /// is the gradient of its own logit. Without `attention`, the attention
    /// gradients may be left out ([`Model::embedding_gradients`]).
    pub fn gradients_batch(&self, encs: &[&Encoding], targets: &[usize], attention: bool) -> anyhow::Result<Vec<Gradients>> {
        anyhow::ensure!(self.is_classifier(), "gradient methods need a classification head; {} is a bare encoder", self.name);
        anyhow::ensure!(encs.len() == targets.len(), "{} targets for {} texts", targets.len(), encs.len());
        if encs.is_empty() {
            return Ok(Vec::new());
        }
        let classes = self.labels().len();
        if let Some(&t) = targets.iter().find(|&&t| t >= classes) {
            anyhow::bail!("--target {t} is out of range (the model has {classes} labels)");
        }
        let (ids, types, pos, mask, lengths) = self.batch_of(encs)?;
        let embeds = self.encoder.embed_words(&ids)?;
        let input = EncoderInput { word_embeds: &embeds, position_ids: &pos, type_ids: &types, attention_mask: mask.as_ref() };
        let (chosen, g_emb, attentions, attn_grads) = match self.encoder.gradients_fast(&input, targets, attention)? {
            Some(g) => {
                let chosen = targets.iter().zip(&g.logits).map(|(&t, l)| l[t]).collect::<Vec<f32>>();
                (chosen, Tensor::from_vec(g.embed_grads, embeds.shape(), embeds.device())?, g.attentions, g.attention_grads)
            }
            None => self.gradients_graph(&input, targets)?,
        };
        let heads = self.num_heads();
        let attentions = split_attentions(&attentions, &lengths, heads)?;
        let attention_grads = split_attentions(&attn_grads, &lengths, heads)?;
        let embeddings = split_rows(&embeds, &lengths)?;
        let embedding_grads = split_rows(&g_emb, &lengths)?;
        let hidden = self.config().embedding_size;
        Ok(chosen
            .into_iter()
            .zip(embeddings)
            .zip(embedding_grads)
            .zip(attentions.into_iter().zip(attention_grads))
            .map(|(((logit, embeddings), embedding_grads), (attentions, attention_grads))| Gradients {
                logit,
                hidden,
                embeddings,
                embedding_grads,
                attentions,
                attention_grads,
            })
            .collect())
    }

    /// The candle-graph backward of [`Self::gradients_batch`]: (chosen
    /// logits, embedding gradients, attentions, attention gradients).
    pub(super) fn gradients_graph(&self, input: &EncoderInput, targets: &[usize]) -> anyhow::Result<(Vec<f32>, Tensor, Vec<Tensor>, Vec<Tensor>)> {
        let embeds = candle_core::Var::from_tensor(input.word_embeds)?;
        let out = self.encoder.forward(&EncoderInput { word_embeds: embeds.as_tensor(), ..*input }, RunMode::GRADIENTS)?;
        let logits = out.logits.as_ref().context("classifier has no logits")?;
        let classes = logits.dim(1)?;
        // One-hot selection of each row's target: sum of the chosen logits.
        let mut pick = vec![0f32; targets.len() * classes];
        for (i, &t) in targets.iter().enumerate() {
            pick[i * classes + t] = 1.0;
        }
        let pick = Tensor::from_vec(pick, (targets.len(), classes), logits.device())?;
        let chosen = (logits * &pick)?.sum(1)?;
        let grads = chosen.sum_all()?.backward()?;
        let g_emb = grads.get(embeds.as_tensor()).context("no gradient reached the embeddings")?.clone();
        let mut attn_grads = Vec::with_capacity(out.attention_probes.len());
        for probe in &out.attention_probes {
            attn_grads.push(grads.get(probe.as_tensor()).context("no gradient reached an attention matrix")?.clone());
        }
        Ok((chosen.to_vec1::<f32>()?, g_emb, out.attentions, attn_grads))
    }
}
