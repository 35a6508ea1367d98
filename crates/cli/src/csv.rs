//! A small RFC 4180 CSV reader and writer: quoted fields, doubled quotes, CRLF or LF line
//! ends, line breaks inside quotes, a UTF-8 byte-order mark, and a chosen delimiter (Excel
//! writes `;` in many locales). Every record knows the line it starts on, so a bad row can be
//! named by its line number.

/// One record and where it starts in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// 1-based line number of the record's first character.
    pub line: usize,
    pub fields: Vec<String>,
}

/// A record that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// 1-based line number where the record starts.
    pub line: usize,
    pub message: String,
    /// What was read of it, so the row can still be written out for fixing.
    pub fields: Vec<String>,
}

/// Reads every record of `text`. Empty lines are skipped. A quote that is never closed makes
/// the rest of the file one bad record, reported with the line it starts on.
pub fn read(text: &str, delimiter: char) -> Vec<Result<Record, RecordError>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while chars.peek().is_some() {
        let start = line;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        let mut was_quoted = false;
        let mut unterminated = false;
        loop {
            let Some(c) = chars.next() else {
                unterminated = quoted;
                break;
            };
            if quoted {
                match c {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    '"' => quoted = false,
                    '\n' => {
                        line += 1;
                        field.push('\n');
                    }
                    '\r' if chars.peek() == Some(&'\n') => {}
                    _ => field.push(c),
                }
                continue;
            }
            match c {
                '"' if field.is_empty() && !was_quoted => {
                    quoted = true;
                    was_quoted = true;
                }
                c if c == delimiter => {
                    fields.push(std::mem::take(&mut field));
                    was_quoted = false;
                }
                '\r' if chars.peek() == Some(&'\n') => {}
                '\n' => {
                    line += 1;
                    break;
                }
                // Lenient: a quote inside an unquoted field, or text after a closing quote,
                // is kept as it is.
                _ => field.push(c),
            }
        }
        fields.push(field);
        if unterminated {
            records.push(Err(RecordError {
                line: start,
                message: "a quoted field is never closed: add the missing `\"` (a quote inside a field is written as `\"\"`)".into(),
                fields,
            }));
            break;
        }
        let blank = fields.len() == 1 && fields[0].is_empty() && !was_quoted;
        if !blank {
            records.push(Ok(Record {
                line: start,
                fields,
            }));
        }
    }
    records
}

/// One CSV record (with CRLF), quoting fields that contain the delimiter, quotes or line
/// breaks, or that start or end with a space.
pub fn format_record<'a>(fields: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for (i, field) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let needs_quotes = field.contains([',', ';', '"', '\n', '\r'])
            || field.starts_with(' ')
            || field.ends_with(' ');
        if needs_quotes {
            out.push('"');
            out.push_str(&field.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(field);
        }
    }
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Vec<(usize, Vec<String>)> {
        read(text, ',')
            .into_iter()
            .map(|r| {
                let r = r.expect("record");
                (r.line, r.fields)
            })
            .collect()
    }

    fn rec(line: usize, fields: &[&str]) -> (usize, Vec<String>) {
        (line, fields.iter().map(|f| (*f).to_owned()).collect())
    }

    #[test]
    fn plain_records_with_lf_or_crlf() {
        assert_eq!(
            ok("a,b,c\n1,2,3\n"),
            [rec(1, &["a", "b", "c"]), rec(2, &["1", "2", "3"])]
        );
        assert_eq!(
            ok("a,b\r\n1,2\r\n"),
            [rec(1, &["a", "b"]), rec(2, &["1", "2"])]
        );
        assert_eq!(ok("a,b\n1,2"), [rec(1, &["a", "b"]), rec(2, &["1", "2"])]);
    }

    #[test]
    fn quotes_escaped_quotes_and_delimiters_inside_quotes() {
        assert_eq!(
            ok("\"Lovelace, Ada\",\"say \"\"hi\"\"\",\"\"\n"),
            [rec(1, &["Lovelace, Ada", "say \"hi\"", ""])]
        );
    }

    #[test]
    fn line_breaks_inside_quotes_keep_line_numbers_right() {
        assert_eq!(
            ok("h1,h2\n\"two\r\nlines\",x\nnext,y\n"),
            [
                rec(1, &["h1", "h2"]),
                rec(2, &["two\nlines", "x"]),
                rec(4, &["next", "y"])
            ]
        );
    }

    #[test]
    fn empty_fields_blank_lines_and_a_bom() {
        assert_eq!(
            ok("\u{feff}a,,c\n\n,\n"),
            [rec(1, &["a", "", "c"]), rec(3, &["", ""])]
        );
        assert_eq!(ok("\"\"\n"), [rec(1, &[""])]);
    }

    #[test]
    fn an_unclosed_quote_is_reported_at_its_line() {
        let records = read("a,b\n1,\"open\n2,3\n", ',');
        assert!(records[0].is_ok());
        let error = records[1].clone().unwrap_err();
        assert_eq!(error.line, 2);
        assert_eq!(error.fields, ["1", "open\n2,3\n"]);
        assert_eq!(records.len(), 2);
    }

    #[test]
    fn a_stray_quote_in_an_unquoted_field_is_kept() {
        assert_eq!(ok("5\" screen,x\n"), [rec(1, &["5\" screen", "x"])]);
    }

    #[test]
    fn semicolons_as_delimiter() {
        let records: Vec<_> = read("a;\"b;c\"\n", ';')
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(records[0].fields, ["a", "b;c"]);
    }

    #[test]
    fn written_records_read_back_the_same() {
        let fields = [
            "plain",
            "with, comma",
            "with \"quote\"",
            "two\nlines",
            " padded",
            "",
        ];
        let text = format_record(fields);
        assert_eq!(
            text,
            "plain,\"with, comma\",\"with \"\"quote\"\"\",\"two\nlines\",\" padded\",\r\n"
        );
        assert_eq!(ok(&text), [rec(1, &fields)]);
    }
}
