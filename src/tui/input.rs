//! The single-line text editor behind the input box (readline-style keys).
//!
//! The cursor is a char index so multi-byte text never splits a character;
//! the length is capped so a huge paste cannot stall the model.

/// Longest input the explorer accepts, in characters. Longer text would be
/// truncated by the model anyway (512 tokens) and make every keystroke slow.
pub const MAX_INPUT_CHARS: usize = 1000;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct LineInput {
    chars: Vec<char>,
    /// Cursor position in chars, `0..=len`.
    cursor: usize,
}

impl LineInput {
    pub fn new(text: &str) -> Self {
        let mut s = Self::default();
        s.insert_str(text);
        s
    }
    pub fn text(&self) -> String {
        self.chars.iter().collect()
    }
    pub fn cursor(&self) -> usize {
        self.cursor
    }
    pub fn len(&self) -> usize {
        self.chars.len()
    }
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }
    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    /// Inserts at the cursor; a line break (CR, LF or CRLF: terminals and
    /// tmux send pasted line breaks as CR) and other control characters
    /// become one space each (one-line input), so pasted lines never glue
    /// words together. Returns the number of characters dropped over the cap.
    pub fn insert_str(&mut self, s: &str) -> usize {
        let room = MAX_INPUT_CHARS.saturating_sub(self.chars.len());
        let mut dropped = 0;
        let mut new = Vec::new();
        let mut after_cr = false;
        for c in s.chars() {
            // The LF of a CRLF pair was already counted by its CR.
            let skip = after_cr && c == '\n';
            after_cr = c == '\r';
            if skip {
                continue;
            }
            let c = if c.is_control() { ' ' } else { c };
            if new.len() < room {
                new.push(c);
            } else {
                dropped += 1;
            }
        }
        let n = new.len();
        self.chars.splice(self.cursor..self.cursor, new);
        self.cursor += n;
        dropped
    }
    /// Returns false when the character did not fit.
    pub fn insert(&mut self, c: char) -> bool {
        let mut buf = [0u8; 4];
        self.insert_str(c.encode_utf8(&mut buf)) == 0
    }
    pub fn backspace(&mut self) {
        if self.cursor > 0 {
            self.cursor -= 1;
            self.chars.remove(self.cursor);
        }
    }
    pub fn delete(&mut self) {
        if self.cursor < self.chars.len() {
            self.chars.remove(self.cursor);
        }
    }
    pub fn left(&mut self) {
        self.cursor = self.cursor.saturating_sub(1);
    }
    pub fn right(&mut self) {
        self.cursor = (self.cursor + 1).min(self.chars.len());
    }
    pub fn home(&mut self) {
        self.cursor = 0;
    }
    pub fn end(&mut self) {
        self.cursor = self.chars.len();
    }
    /// Start of the word before the cursor (skipping spaces first), as Ctrl-W sees it.
    fn word_start(&self) -> usize {
        let mut i = self.cursor;
        while i > 0 && self.chars[i - 1].is_whitespace() {
            i -= 1;
        }
        while i > 0 && !self.chars[i - 1].is_whitespace() {
            i -= 1;
        }
        i
    }
    pub fn word_left(&mut self) {
        self.cursor = self.word_start();
    }
    pub fn word_right(&mut self) {
        let n = self.chars.len();
        let mut i = self.cursor;
        while i < n && self.chars[i].is_whitespace() {
            i += 1;
        }
        while i < n && !self.chars[i].is_whitespace() {
            i += 1;
        }
        self.cursor = i;
    }
    /// Ctrl-W: delete the word before the cursor.
    pub fn delete_word(&mut self) {
        let s = self.word_start();
        self.chars.drain(s..self.cursor);
        self.cursor = s;
    }
    /// Ctrl-U: delete everything before the cursor.
    pub fn delete_to_start(&mut self) {
        self.chars.drain(..self.cursor);
        self.cursor = 0;
    }
    /// Ctrl-K: delete everything after the cursor.
    pub fn delete_to_end(&mut self) {
        self.chars.truncate(self.cursor);
    }
    /// Replaces the whole text (loading an example); cursor at the end.
    pub fn set(&mut self, text: &str) -> usize {
        self.chars.clear();
        self.cursor = 0;
        self.insert_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editing_keys() {
        let mut l = LineInput::new("hello big world");
        l.delete_word();
        assert_eq!(l.text(), "hello big ");
        l.delete_word();
        assert_eq!(l.text(), "hello ");
        l.home();
        l.insert('¡');
        assert_eq!((l.text().as_str(), l.cursor()), ("¡hello ", 1));
        l.end();
        l.backspace();
        l.left();
        l.delete();
        assert_eq!(l.text(), "¡hell");
        l.left();
        l.left();
        l.delete_to_start();
        assert_eq!((l.text().as_str(), l.cursor()), ("ll", 0));
        l.right();
        l.delete_to_end();
        assert_eq!(l.text(), "l");
        let mut w = LineInput::new("ab cd  ef");
        w.word_left();
        assert_eq!(w.cursor(), 7);
        w.word_left();
        assert_eq!(w.cursor(), 3);
        w.word_right();
        assert_eq!(w.cursor(), 5);
    }

    #[test]
    fn paste_is_capped_and_flattened() {
        let mut l = LineInput::new("x");
        let dropped = l.insert_str(&"a\nb".repeat(700));
        assert_eq!(l.len(), MAX_INPUT_CHARS);
        assert_eq!(dropped, 2100 - (MAX_INPUT_CHARS - 1));
        assert!(!l.text().contains('\n'));
        assert!(!l.insert('z'));
    }

    #[test]
    fn pasted_line_breaks_become_one_space() {
        for paste in ["here\rsecond", "here\nsecond", "here\r\nsecond"] {
            assert_eq!(LineInput::new(paste).text(), "here second", "{paste:?}");
        }
        assert_eq!(LineInput::new("a\r\rb\n\nc").text(), "a  b  c", "blank lines keep their break");
    }

    /// One random editing action.
    #[derive(Clone, Debug)]
    enum Edit {
        Type(String),
        Backspace,
        Delete,
        Left,
        Right,
        Home,
        End,
        WordLeft,
        WordRight,
        DeleteWord,
        ToStart,
        ToEnd,
    }

    fn random_text(rng: &mut impl rand::Rng) -> String {
        const POOL: &[char] = &['a', 'Z', ' ', '\t', '\r', '\n', 'é', '漢', '🙂', '\u{301}', '\u{200d}', '\u{0}', 'ß', '\u{7f}'];
        let n = rng.gen_range(0..12);
        (0..n).map(|_| if rng.gen_bool(0.3) { char::from_u32(rng.gen_range(0..0x3_0000)).unwrap_or('x') } else { POOL[rng.gen_range(0..POOL.len())] }).collect()
    }

    fn random_edit(rng: &mut impl rand::Rng) -> Edit {
        match rng.gen_range(0..12) {
            0 => Edit::Type(random_text(rng)),
            1 => Edit::Backspace,
            2 => Edit::Delete,
            3 => Edit::Left,
            4 => Edit::Right,
            5 => Edit::Home,
            6 => Edit::End,
            7 => Edit::WordLeft,
            8 => Edit::WordRight,
            9 => Edit::DeleteWord,
            10 => Edit::ToStart,
            _ => Edit::ToEnd,
        }
    }

    /// Property test (seeded, so a failure is reproducible): after any
    /// sequence of edits the cursor is within the text, the text is one line
    /// without control characters under the cap, and only deletion keys
    /// remove characters — movement never changes the text, typing never
    /// loses what was there.
    #[test]
    fn any_edit_sequence_keeps_a_valid_cursor_and_the_typed_text() {
        use rand::{Rng, SeedableRng};
        for seed in 0..300u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut l = LineInput::default();
            let steps = rng.gen_range(1..120);
            for _ in 0..steps {
                let e = random_edit(&mut rng);
                let (before, cur) = (l.chars().to_vec(), l.cursor());
                match &e {
                    Edit::Type(s) => {
                        let dropped = l.insert_str(s);
                        // What was there is still there, around the inserted run.
                        let added = l.len() - before.len();
                        assert_eq!(&l.chars()[..cur], &before[..cur], "seed {seed}: {e:?}");
                        assert_eq!(&l.chars()[cur + added..], &before[cur..], "seed {seed}: {e:?}");
                        assert_eq!(l.cursor(), cur + added, "seed {seed}: cursor after the insert");
                        let breaks = s.matches("\r\n").count();
                        assert_eq!(added + dropped, s.chars().count() - breaks, "seed {seed}: {s:?}: each char kept or counted dropped");
                    }
                    Edit::Backspace => l.backspace(),
                    Edit::Delete => l.delete(),
                    Edit::Left => l.left(),
                    Edit::Right => l.right(),
                    Edit::Home => l.home(),
                    Edit::End => l.end(),
                    Edit::WordLeft => l.word_left(),
                    Edit::WordRight => l.word_right(),
                    Edit::DeleteWord => l.delete_word(),
                    Edit::ToStart => l.delete_to_start(),
                    Edit::ToEnd => l.delete_to_end(),
                }
                assert!(l.cursor() <= l.len(), "seed {seed}: cursor {} past {} after {e:?}", l.cursor(), l.len());
                assert!(l.len() <= MAX_INPUT_CHARS);
                assert!(!l.chars().iter().any(|c| c.is_control()), "seed {seed}: control char kept");
                let moved = matches!(e, Edit::Left | Edit::Right | Edit::Home | Edit::End | Edit::WordLeft | Edit::WordRight);
                if moved {
                    assert_eq!(l.chars(), &before[..], "seed {seed}: {e:?} changed the text");
                }
                if !matches!(e, Edit::Type(_)) && !moved {
                    // Deletions remove one contiguous run and keep the rest in order.
                    let removed = before.len() - l.len();
                    let start = l.cursor();
                    assert_eq!(&l.chars()[..start], &before[..start], "seed {seed}: {e:?}");
                    assert_eq!(&l.chars()[start..], &before[start + removed..], "seed {seed}: {e:?}");
                }
            }
        }
    }
}
