//! A minimal RFC 4180 CSV reader (quoted fields, doubled quotes, newlines
//! inside quotes), enough for HateXplain's `train_labels.csv` without a new
//! dependency.

use anyhow::{Result, bail};

/// One record with the 1-based line on which it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub line: usize,
    pub fields: Vec<String>,
}

/// Parse all records of `text`. Blank lines between records are skipped.
/// Errors name the line (1-based) where the problem is.
pub fn parse(text: &str) -> Result<Vec<Record>> {
    let mut records = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut record_line = 1;
    // state: at the start of a field (may open a quote)
    let mut at_field_start = true;
    let mut record_has_content = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if at_field_start => {
                let quote_line = line;
                record_has_content = true;
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some('"') => break,
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            field.push(c);
                        }
                        None => bail!("line {quote_line}: unterminated quoted field"),
                    }
                }
                match chars.peek() {
                    None | Some(',') | Some('\n') | Some('\r') => {}
                    Some(c) => bail!(
                        "line {line}: unexpected {c:?} after a closing quote (quotes inside a field must be doubled)"
                    ),
                }
                at_field_start = false;
            }
            ',' => {
                fields.push(std::mem::take(&mut field));
                at_field_start = true;
                record_has_content = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                if record_has_content {
                    fields.push(std::mem::take(&mut field));
                    records.push(Record {
                        line: record_line,
                        fields: std::mem::take(&mut fields),
                    });
                }
                line += 1;
                record_line = line;
                at_field_start = true;
                record_has_content = false;
            }
            '"' => bail!("line {line}: stray quote inside an unquoted field"),
            c => {
                field.push(c);
                at_field_start = false;
                record_has_content = true;
            }
        }
    }
    if record_has_content {
        fields.push(field);
        records.push(Record {
            line: record_line,
            fields,
        });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quoted_fields() {
        let text = "a,b,c\r\n1,\"x, y\",\"say \"\"hi\"\"\"\n\n2,\"two\nlines\",\n3,,z";
        let r = parse(text).unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(
            r[0],
            Record {
                line: 1,
                fields: vec!["a".into(), "b".into(), "c".into()]
            }
        );
        assert_eq!(r[1].fields, vec!["1", "x, y", "say \"hi\""]);
        assert_eq!(r[1].line, 2);
        assert_eq!(r[2].fields, vec!["2", "two\nlines", ""]);
        assert_eq!(r[2].line, 4);
        assert_eq!(r[3].fields, vec!["3", "", "z"]);
        assert_eq!(r[3].line, 6);
    }

    #[test]
    fn rejects_broken_quotes_with_line() {
        let err = parse("a,b\n1,\"open\n").unwrap_err().to_string();
        assert!(
            err.contains("line 2") && err.contains("unterminated"),
            "{err}"
        );
        let err = parse("a,b\n1,\"x\"y\n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        let err = parse("a,b\n1,x\"y\n").unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("stray"), "{err}");
    }
}
