//! A small parser for Penn-Treebank-style bracketed trees, as SST publishes
//! them: `(label child child …)` with leaves `(label word)`.
//!
//! Leaf words are kept verbatim except for whitespace: a leaf may contain
//! spaces (SST has `(2 R  ock)` and no-break spaces in `2 1\/2`), and runs of
//! whitespace inside a leaf are collapsed to one ASCII space so that
//! [`super::Example::text`] stays a faithful join. [`unescape`] undoes the PTB
//! escapes for display.

use anyhow::{Result, bail};

/// One node of a bracketed tree.
#[derive(Clone, Debug, PartialEq)]
pub struct Tree {
    pub label: String,
    pub kind: TreeKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TreeKind {
    Leaf(String),
    Node(Vec<Tree>),
}

/// A subtree flattened to its word span, for phrase-level use.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    pub label: String,
    /// Word indices `[start, end)` covered by the subtree.
    pub start: usize,
    pub end: usize,
    pub is_leaf: bool,
}

/// Nesting deeper than this is rejected rather than risking the stack.
const MAX_DEPTH: usize = 2000;

impl Tree {
    /// Parse one tree from a line; errors name the character column.
    pub fn parse(line: &str) -> Result<Tree> {
        let chars: Vec<char> = line.chars().collect();
        let mut p = Parser {
            chars: &chars,
            pos: 0,
        };
        p.skip_ws();
        let tree = p.tree(0)?;
        p.skip_ws();
        if p.pos < chars.len() {
            bail!("unexpected text after the tree at column {}", p.pos + 1);
        }
        Ok(tree)
    }

    /// The leaves in order, with their labels.
    pub fn leaves(&self) -> Vec<(&str, &str)> {
        let mut out = Vec::new();
        self.collect_leaves(&mut out);
        out
    }

    fn collect_leaves<'a>(&'a self, out: &mut Vec<(&'a str, &'a str)>) {
        match &self.kind {
            TreeKind::Leaf(w) => out.push((self.label.as_str(), w.as_str())),
            TreeKind::Node(children) => children.iter().for_each(|c| c.collect_leaves(out)),
        }
    }

    /// Every subtree (the root first, then pre-order) with its word span.
    pub fn spans(&self) -> Vec<Span> {
        let mut out = Vec::new();
        self.collect_spans(0, &mut out);
        out
    }

    fn collect_spans(&self, start: usize, out: &mut Vec<Span>) -> usize {
        let idx = out.len();
        let is_leaf = matches!(self.kind, TreeKind::Leaf(_));
        out.push(Span {
            label: self.label.clone(),
            start,
            end: start,
            is_leaf,
        });
        let end = match &self.kind {
            TreeKind::Leaf(_) => start + 1,
            TreeKind::Node(children) => {
                let mut pos = start;
                for c in children {
                    pos = c.collect_spans(pos, out);
                }
                pos
            }
        };
        out[idx].end = end;
        end
    }
}

struct Parser<'a> {
    chars: &'a [char],
    pos: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.pos < self.chars.len() && self.chars[self.pos].is_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn tree(&mut self, depth: usize) -> Result<Tree> {
        if depth > MAX_DEPTH {
            bail!(
                "tree nested deeper than {MAX_DEPTH} levels at column {}",
                self.pos + 1
            );
        }
        match self.peek() {
            Some('(') => self.pos += 1,
            Some(c) => bail!("expected '(' at column {}, found {c:?}", self.pos + 1),
            None => bail!("expected '(' but the line ended (empty or truncated tree)"),
        }
        self.skip_ws();
        let label_start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_whitespace() || c == '(' || c == ')' {
                break;
            }
            self.pos += 1;
        }
        if self.pos == label_start {
            bail!("missing node label at column {}", label_start + 1);
        }
        let label: String = self.chars[label_start..self.pos].iter().collect();
        self.skip_ws();
        match self.peek() {
            Some('(') => {
                let mut children = Vec::new();
                loop {
                    self.skip_ws();
                    match self.peek() {
                        Some('(') => children.push(self.tree(depth + 1)?),
                        Some(')') => {
                            self.pos += 1;
                            return Ok(Tree {
                                label,
                                kind: TreeKind::Node(children),
                            });
                        }
                        Some(c) => bail!(
                            "unexpected {c:?} at column {} (a node mixes words and subtrees)",
                            self.pos + 1
                        ),
                        None => bail!("unbalanced parentheses: the line ended inside a tree"),
                    }
                }
            }
            Some(')') => bail!(
                "node {label:?} at column {} has neither a word nor children",
                label_start + 1
            ),
            None => bail!("unbalanced parentheses: the line ended inside a tree"),
            Some(_) => {
                let word_start = self.pos;
                loop {
                    match self.peek() {
                        Some(')') => break,
                        Some('(') => {
                            bail!("unexpected '(' inside the word at column {}", self.pos + 1)
                        }
                        None => bail!("unbalanced parentheses: the line ended inside a leaf"),
                        Some(_) => self.pos += 1,
                    }
                }
                let raw: String = self.chars[word_start..self.pos].iter().collect();
                self.pos += 1;
                let word = raw.split_whitespace().collect::<Vec<_>>().join(" ");
                Ok(Tree {
                    label,
                    kind: TreeKind::Leaf(word),
                })
            }
        }
    }
}

/// Undo PTB token escapes for display: `-LRB-` → `(`, ``` `` ``` and `''` → `"`,
/// `` ` `` → `'`, `\/` → `/`, `\*` → `*`, and the bracket variants.
pub fn unescape(word: &str) -> String {
    match word {
        "``" | "''" => return "\"".into(),
        "`" => return "'".into(),
        _ => {}
    }
    let mut out = word.replace("\\/", "/").replace("\\*", "*");
    for (esc, c) in BRACKETS {
        if out.contains(esc) {
            out = out.replace(esc, c);
        }
    }
    out
}

/// PTB bracket escapes (they may also occur inside a token).
pub const BRACKETS: [(&str, &str); 6] = [
    ("-LRB-", "("),
    ("-RRB-", ")"),
    ("-LSB-", "["),
    ("-RSB-", "]"),
    ("-LCB-", "{"),
    ("-RCB-", "}"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_tree_and_spans() {
        let t = Tree::parse("(3 (2 The) (4 (3 shiny) (2 -LRB-toy-RRB-)))").unwrap();
        assert_eq!(t.label, "3");
        assert_eq!(
            t.leaves(),
            vec![("2", "The"), ("3", "shiny"), ("2", "-LRB-toy-RRB-")]
        );
        let spans = t.spans();
        let got: Vec<(&str, usize, usize)> = spans
            .iter()
            .map(|s| (s.label.as_str(), s.start, s.end))
            .collect();
        assert_eq!(
            got,
            vec![
                ("3", 0, 3),
                ("2", 0, 1),
                ("4", 1, 3),
                ("3", 1, 2),
                ("2", 2, 3)
            ]
        );
    }

    #[test]
    fn leaf_whitespace_is_collapsed() {
        let t = Tree::parse("(2 (2 Ro  ck) (2 3\u{a0}1\\/2))").unwrap();
        assert_eq!(t.leaves(), vec![("2", "Ro ck"), ("2", "3 1\\/2")]);
    }

    #[test]
    fn rejects_malformed_trees() {
        for (bad, needle) in [
            ("(3 (2 a) (2 b)", "unbalanced"),
            ("(3 (2 a)) x", "after the tree"),
            ("3 a", "expected '('"),
            ("(3 )", "neither"),
            ("", "line ended"),
            ("(3 a (2 b))", "'('"),
        ] {
            let err = Tree::parse(bad).unwrap_err().to_string();
            assert!(err.contains(needle), "{bad:?}: {err}");
        }
    }

    #[test]
    fn unescapes_ptb_tokens() {
        assert_eq!(unescape("-LRB-"), "(");
        assert_eq!(unescape("``"), "\"");
        assert_eq!(unescape("''"), "\"");
        assert_eq!(unescape("`"), "'");
        assert_eq!(unescape("writer\\/director"), "writer/director");
        assert_eq!(unescape("\\*\\*"), "**");
        assert_eq!(unescape("'s"), "'s");
        assert_eq!(unescape("-LRB-a-RRB-"), "(a)");
    }
}
