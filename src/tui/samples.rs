//! Built-in sentences for the examples browser, written for this project
//! (not taken from any data set). Rationale words are marked `*like this*`:
//! the words a person would point at to justify the sentiment.

/// One entry of the examples browser.
#[derive(Clone, Debug, PartialEq)]
pub struct ExampleItem {
    pub text: String,
    /// Human rationale, one flag per whitespace-separated word of `text`
    /// (`None` when the example has no annotation).
    pub rationale: Option<Vec<bool>>,
}

impl ExampleItem {
    /// Parses the `*marked*` notation used by the built-in list.
    pub fn marked(src: &str) -> Self {
        let mut words = Vec::new();
        let mut flags = Vec::new();
        for w in src.split_whitespace() {
            let marked = w.starts_with('*') && w.trim_end_matches(['.', ',', '!', '?']).ends_with('*') && w.len() > 2;
            words.push(w.replacen('*', "", 2));
            flags.push(marked);
        }
        let any = flags.iter().any(|f| *f);
        Self { text: words.join(" "), rationale: any.then_some(flags) }
    }
}

const BUILTIN: &[&str] = &[
    "A *warm*, *funny* and *beautifully* acted film that I would happily watch again.",
    "The plot is *predictable* and the dialogue *painfully* *flat*.",
    "I did not expect much, but the ending left me *speechless*.",
    "Two hours of my life I will *never* get back.",
    "The soundtrack is *gorgeous* even when the story *drags*.",
    "Not *bad* at all, just *forgettable*.",
    "An *ambitious* mess that *collapses* under its own weight.",
    "The kids in the audience *loved* every minute of it.",
    "Sharp writing, *superb* cast, *brilliant* final act.",
    "It tries to be clever and ends up *tedious*.",
];

/// The built-in examples, in browser order.
pub fn builtin() -> Vec<ExampleItem> {
    BUILTIN.iter().map(|s| ExampleItem::marked(s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_notation() {
        let e = ExampleItem::marked("so *good* , really *fun*.");
        assert_eq!(e.text, "so good , really fun.");
        assert_eq!(e.rationale, Some(vec![false, true, false, false, true]));
        assert_eq!(ExampleItem::marked("plain text").rationale, None);
        assert_eq!(builtin().len(), 10);
        assert!(builtin().iter().all(|e| e.rationale.is_some()));
    }
}
