//! Names as people type them, folded to keys that compare equal when the names sound or are
//! written alike. Rules (docs/matching.md):
//!
//! - **Reading key** (`reading_key`): hiragana, katakana, half-width kana and romaji all become
//!   one lower-case Latin spelling: small kana read as large (キョ = キヨ), ヅ = ズ, ヂ = ジ,
//!   ヴ = ブ, ヲ = オ, doubled consonants and ッ dropped, long vowels collapsed (オウ = オオ = オー
//!   = ō = oh = o), Hepburn and Kunrei spellings made one (shi = si, tsu = tu, fu = hu, ji = zi),
//!   m before b/p = n.
//! - **Kanji key** (`kanji_key`): NFKC, spaces removed, variant and old kanji folded with
//!   `src/data/variant_kanji.tsv` (NFKC alone does not fold 髙, 﨑 or 𠮷).

use std::collections::HashMap;
use std::sync::OnceLock;

use unicode_normalization::UnicodeNormalization;

use crate::model::kana;

const VARIANTS: &str = include_str!("../data/variant_kanji.tsv");

fn variant_table() -> &'static HashMap<char, char> {
    static TABLE: OnceLock<HashMap<char, char>> = OnceLock::new();
    TABLE.get_or_init(|| {
        VARIANTS
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("variant\t") && !l.trim().is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                // Compiled-in data, checked by tests.
                let one = |s: &str| {
                    let mut c = s.chars();
                    let ch = c.next().expect("variant_kanji.tsv: a character");
                    assert!(c.next().is_none(), "variant_kanji.tsv: one character per field: {l}");
                    ch
                };
                (one(f[0]), one(f[1]))
            })
            .collect()
    })
}

/// What script a typed name is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// Only kana (any kind).
    Kana,
    /// Only Latin letters.
    Romaji,
    /// Kanji, possibly with kana (トメ子, 佐藤 はる).
    Kanji,
}

fn is_kana(c: char) -> bool {
    ('ぁ'..='ゖ').contains(&c) || ('ァ'..='ヺ').contains(&c) || ('ｦ'..='ﾟ').contains(&c) || "ーゝゞヽヾ".contains(c)
}

fn is_separator(c: char) -> bool {
    c.is_whitespace() || "・･.,、。'’-‐".contains(c)
}

pub fn script(name: &str) -> Script {
    let letters = name.chars().filter(|c| !is_separator(*c));
    let mut kana = true;
    let mut latin = true;
    for c in letters {
        kana &= is_kana(c);
        latin &= c.is_ascii_alphabetic() || ('\u{00C0}'..='\u{024F}').contains(&c) || ('Ａ'..='ｚ').contains(&c);
    }
    if kana {
        Script::Kana
    } else if latin {
        Script::Romaji
    } else {
        Script::Kanji
    }
}

/// The kanji key of a name: NFKC, no spaces, variant kanji folded to the form people type.
pub fn kanji_key(name: &str) -> String {
    let table = variant_table();
    name.nfkc().filter(|c| !is_separator(*c)).map(|c| table.get(&c).copied().unwrap_or(c)).collect()
}

/// Katakana with small kana read as large and the sound-alike kana made one.
fn fold_katakana(s: &str) -> String {
    let mut full = kana::hiragana_to_katakana(&kana::halfwidth_to_fullwidth(s));
    // ヴ with a small vowel is how loanwords write ba-gyō sounds.
    for (from, to) in [("ヴァ", "バ"), ("ヴィ", "ビ"), ("ヴェ", "ベ"), ("ヴォ", "ボ"), ("ヴ", "ブ")] {
        full = full.replace(from, to);
    }
    full.chars()
        .filter_map(|c| match c {
            'ァ' => Some('ア'),
            'ィ' => Some('イ'),
            'ゥ' => Some('ウ'),
            'ェ' => Some('エ'),
            'ォ' => Some('オ'),
            'ャ' => Some('ヤ'),
            'ュ' => Some('ユ'),
            'ョ' => Some('ヨ'),
            'ヮ' => Some('ワ'),
            'ヵ' => Some('カ'),
            'ヶ' => Some('ケ'),
            'ヅ' => Some('ズ'),
            'ヂ' => Some('ジ'),
            'ヲ' => Some('オ'),
            'ヰ' => Some('イ'),
            'ヱ' => Some('エ'),
            // Geminate and long-vowel marks carry no letter of their own in the key.
            'ッ' | 'ー' => None,
            c if is_separator(c) => None,
            c => Some(c),
        })
        .collect()
}

/// Latin letters with macrons and circumflexes made plain, lower case, letters only.
fn plain_latin(s: &str) -> String {
    s.nfkc()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'ā' | 'â' | 'ä' => 'a',
            'ī' | 'î' => 'i',
            'ū' | 'û' | 'ü' => 'u',
            'ē' | 'ê' => 'e',
            'ō' | 'ô' | 'ö' => 'o',
            c => c,
        })
        .filter(|c| c.is_ascii_lowercase())
        .collect()
}

fn is_vowel(c: u8) -> bool {
    b"aiueo".contains(&c)
}

/// One spelling for romaji, whatever system and long-vowel habit wrote it.
fn fold_romaji(r: &str) -> String {
    let mut s = r.to_owned();
    // "oh" before a consonant or at the end is a long o (satoh, ohno); before a vowel it is a
    // real h (ohashi = o-hashi).
    let b = s.clone().into_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'o' && b.get(i + 1) == Some(&b'h') && b.get(i + 2).is_none_or(|&n| !is_vowel(n) && n != b'y') {
            out.push(b'o');
            i += 2;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    s = String::from_utf8(out).expect("ASCII");
    for (from, to) in [("tch", "ch"), ("v", "b"), ("wo", "o")] {
        s = s.replace(from, to);
    }
    // Doubled consonants (the geminate ッ) carry nothing the key needs.
    let b = s.into_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    for &c in &b {
        if !is_vowel(c) && c != b'n' && out.last() == Some(&c) {
            continue;
        }
        out.push(c);
    }
    s = String::from_utf8(out).expect("ASCII");
    for (from, to) in [
        ("shi", "si"),
        ("sh", "siy"),
        ("chi", "ti"),
        ("ch", "tiy"),
        ("tsu", "tu"),
        ("fu", "hu"),
        ("ji", "zi"),
        ("j", "ziy"),
        ("di", "zi"),
        ("du", "zu"),
        ("ky", "kiy"),
        ("gy", "giy"),
        ("ny", "niy"),
        ("hy", "hiy"),
        ("by", "biy"),
        ("py", "piy"),
        ("my", "miy"),
        ("ry", "riy"),
        ("zy", "ziy"),
        ("sy", "siy"),
        ("ty", "tiy"),
        ("nn", "n"),
        ("mb", "nb"),
        ("mp", "np"),
        ("mm", "nm"),
    ] {
        s = s.replace(from, to);
    }
    // Long vowels: collapse until nothing changes (ooo, ouu …).
    loop {
        let before = s.len();
        for (from, to) in [("ou", "o"), ("oo", "o"), ("uu", "u"), ("aa", "a"), ("ii", "i"), ("ee", "e"), ("ei", "e")] {
            s = s.replace(from, to);
        }
        if s.len() == before {
            break;
        }
    }
    s
}

/// Two reading keys joined as one name (surname then given name), folded across the join.
pub fn fold_joined(family: &str, given: &str) -> String {
    fold_romaji(&format!("{family}{given}"))
}

/// The reading key of a name typed in kana or romaji; None for anything else (kanji).
pub fn reading_key(name: &str) -> Option<String> {
    match script(name) {
        Script::Kana => Some(fold_romaji(&kana::to_romaji(&fold_katakana(name)))),
        Script::Romaji => Some(fold_romaji(&plain_latin(name))),
        Script::Kanji => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(forms: &[&str]) {
        let keys: Vec<Option<String>> = forms.iter().map(|f| reading_key(f)).collect();
        assert!(keys[0].is_some(), "{}: no key", forms[0]);
        for (f, k) in forms.iter().zip(&keys) {
            assert_eq!(k, &keys[0], "{f} differs from {}", forms[0]);
        }
    }

    #[test]
    fn long_vowels_in_every_script_meet() {
        same(&["サトウ", "さとう", "ｻﾄｳ", "サトー", "satou", "sato", "satoh", "satō", "SATO", "Ｓａｔｏｕ"]);
        same(&["オオノ", "おおの", "オーノ", "オウノ", "ohno", "ono", "oono", "ōno", "Ôno"]);
        same(&["ユウコ", "ゆうこ", "ユーコ", "yuko", "yuuko", "yūko"]);
        same(&["ケイコ", "ケーコ", "keiko", "keeko"]);
    }

    #[test]
    fn kana_variants_and_small_kana_meet() {
        same(&["チヅコ", "チズコ", "ちづこ", "chizuko", "tizuko"]);
        same(&["フジオ", "フヂオ", "fujio", "huzio"]);
        same(&["ヴィクトル", "ビクトル"]);
        same(&["キョウコ", "キヨウコ", "きょうこ", "kyoko", "kyouko"]);
        same(&["ハットリ", "はっとり", "hattori", "hatori"]);
        same(&["シンイチ", "しんいち", "shinichi", "shin'ichi", "sinichi"]);
        same(&["ジュンコ", "junko", "zyunko"]);
        same(&["サンペイ", "sampei", "sanpei"]);
        same(&["オオハシ", "ohashi", "oohashi", "ōhashi"]);
    }

    #[test]
    fn different_names_stay_apart() {
        let k = |s: &str| reading_key(s).unwrap();
        assert_ne!(k("サトウ"), k("サイトウ"));
        assert_ne!(k("タカハシ"), k("タカナシ"));
        assert_ne!(k("ハル"), k("ハナ"));
        assert_eq!(reading_key("佐藤"), None);
    }

    #[test]
    fn variant_kanji_fold_to_what_people_type() {
        assert_eq!(kanji_key("髙橋"), kanji_key("高橋"));
        assert_eq!(kanji_key("山﨑"), "山崎");
        assert_eq!(kanji_key("渡邉"), "渡辺");
        assert_eq!(kanji_key("渡邊"), "渡辺");
        assert_eq!(kanji_key("齋藤"), "斎藤");
        assert_eq!(kanji_key("澤田"), "沢田");
        assert_eq!(kanji_key("濵田"), "浜田");
        assert_eq!(kanji_key("嶋田"), "島田");
        assert_eq!(kanji_key("𠮷田"), "吉田");
        assert_eq!(kanji_key("佐藤　花子"), "佐藤花子");
        assert_ne!(kanji_key("佐藤"), kanji_key("佐竹"));
    }

    #[test]
    fn the_variant_table_is_well_formed() {
        let t = variant_table();
        assert!(t.len() >= 150, "{} rows", t.len());
        for (v, s) in t {
            assert_ne!(v, s);
            assert!(!t.contains_key(s), "{v}→{s} chains on");
        }
    }

    #[test]
    fn scripts_are_told_apart() {
        assert_eq!(script("さとう はる"), Script::Kana);
        assert_eq!(script("ｻﾄｳ ﾊﾙ"), Script::Kana);
        assert_eq!(script("Sato Haru"), Script::Romaji);
        assert_eq!(script("佐藤 はる"), Script::Kanji);
        assert_eq!(script("トメ子"), Script::Kanji);
    }
}
