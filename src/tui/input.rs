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

    /// Inserts at the cursor; newlines and tabs become spaces (one-line
    /// input). Returns the number of characters dropped over the cap.
    pub fn insert_str(&mut self, s: &str) -> usize {
        let room = MAX_INPUT_CHARS.saturating_sub(self.chars.len());
        let mut dropped = 0;
        let mut new = Vec::new();
        for c in s.chars().filter(|c| *c != '\r') {
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
}
