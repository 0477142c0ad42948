//! Free text people type (a purpose, a place, a handover note, a name): what may be in it, and
//! how stored text is shown on a terminal. Control characters are refused at input, as the
//! person CSV refuses them, because stored text ends up in the audit log, on printed sheets and
//! in a coordinator's terminal, where an escape sequence could rewrite what is shown.

use std::borrow::Cow;

/// Text that holds a character no field may hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("使えない文字（制御文字 U+{code:04X}）が含まれています。文字だけを入力してください")]
pub struct ControlCharacter {
    pub code: u32,
}

/// Characters that change how the text around them is shown without being text themselves:
/// bidirectional overrides and isolates, zero-width characters and joiners, line and paragraph
/// separators, the byte-order mark, interlinear annotation and tag characters. They let two
/// names that look alike differ, or a line break where none shows.
fn is_display_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{E0000}'..='\u{E007F}'
    )
}

fn forbidden(c: char, multiline: bool) -> bool {
    (c.is_control() && !(multiline && c == '\n')) || is_display_control(c)
}

/// `text` if it holds no control character; with `multiline`, line breaks are kept (a browser's
/// CR LF becomes LF) and nothing else.
pub fn clean(text: &str, multiline: bool) -> Result<Cow<'_, str>, ControlCharacter> {
    let text: Cow<'_, str> =
        if multiline && text.contains('\r') { Cow::Owned(text.replace("\r\n", "\n")) } else { Cow::Borrowed(text) };
    match text.chars().find(|&c| forbidden(c, multiline)) {
        Some(c) => Err(ControlCharacter { code: u32::from(c) }),
        None => Ok(text),
    }
}

/// `text` as a terminal may show it: every control character (line breaks included) and
/// every display control written as a visible `\u{…}` escape.
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| forbidden(c, false)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if forbidden(c, false) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_with_control_characters_is_refused_and_line_breaks_only_where_asked() {
        assert_eq!(clean("透析は火木土", false).unwrap(), "透析は火木土");
        for bad in [
            "a\u{1b}[2Jb",
            "a\rb",
            "a\u{7}",
            "a\u{202E}b",
            "a\u{0}b",
            "a\u{9b}b",
            "a\u{200b}b",
            "a\u{2028}b",
            "a\u{feff}b",
            "a\u{e0041}b",
            "a\u{fff9}b",
        ] {
            assert!(clean(bad, false).is_err(), "{bad:?}");
            assert!(clean(bad, true).is_err(), "{bad:?}");
        }
        assert!(clean("一行目\n二行目", false).is_err());
        assert_eq!(clean("一行目\r\n二行目", true).unwrap(), "一行目\n二行目");
        assert_eq!(clean("a\u{1b}b", false).unwrap_err().code, 0x1b);
    }

    #[test]
    fn a_terminal_sees_escapes_never_control_characters() {
        assert_eq!(terminal_safe("生活支援"), "生活支援");
        let shown = terminal_safe("その他\r\u{1b}[2K偽の行\u{202E}");
        assert_eq!(shown, "その他\\u{d}\\u{1b}[2K偽の行\\u{202e}");
        assert!(!shown.chars().any(char::is_control));
    }
}
