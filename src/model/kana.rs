//! Kana scripts: hiragana, full-width and half-width katakana, and Hepburn romaji.
//!
//! Records store readings in full-width katakana; input arrives in every script a phone or a
//! legacy municipal system produces, so conversions live here, as pure functions.

/// Hiragana to full-width katakana; everything else unchanged.
pub fn hiragana_to_katakana(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'ぁ'..='ゖ' | 'ゝ' | 'ゞ' => char::from_u32(c as u32 + 0x60).unwrap_or(c),
            _ => c,
        })
        .collect()
}

/// Full-width katakana to hiragana (ヴ and the small ヵヶ included); everything else unchanged.
pub fn katakana_to_hiragana(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'ァ'..='ヶ' | 'ヽ' | 'ヾ' => char::from_u32(c as u32 - 0x60).unwrap_or(c),
            _ => c,
        })
        .collect()
}

/// Half-width katakana (U+FF61–FF9F) in full-width order; index = code point − 0xFF61.
const HALF_TO_FULL: &str = "。「」、・ヲァィゥェォャュョッーアイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワン゛゜";

/// Half-width katakana to full-width, composing voiced marks (ｶﾞ → ガ, ﾊﾟ → パ, ｳﾞ → ヴ).
pub fn halfwidth_to_fullwidth(s: &str) -> String {
    let table: Vec<char> = HALF_TO_FULL.chars().collect();
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let cp = c as u32;
        let full = if (0xFF61..=0xFF9F).contains(&cp) { table[(cp - 0xFF61) as usize] } else { c };
        let composed = match full {
            '゛' => out.chars().last().and_then(voiced),
            '゜' => out.chars().last().and_then(semi_voiced),
            _ => None,
        };
        if let Some(c) = composed {
            out.pop();
            out.push(c);
            continue;
        }
        match full {
            // A full-width space in a name is still a space.
            '\u{3000}' => out.push(' '),
            other => out.push(other),
        }
    }
    out
}

fn voiced(c: char) -> Option<char> {
    match c {
        'ウ' => Some('ヴ'),
        'カ'..='ト' | 'ハ'..='ホ' => {
            // Voiceable kana sit one code point before their voiced form, in steps of 2 (カガキギ…)
            // or 3 (ハバパ…).
            let v = char::from_u32(c as u32 + 1)?;
            let is_voiced_form = matches!(
                v,
                'ガ' | 'ギ'
                    | 'グ'
                    | 'ゲ'
                    | 'ゴ'
                    | 'ザ'
                    | 'ジ'
                    | 'ズ'
                    | 'ゼ'
                    | 'ゾ'
                    | 'ダ'
                    | 'ヂ'
                    | 'ヅ'
                    | 'デ'
                    | 'ド'
                    | 'バ'
                    | 'ビ'
                    | 'ブ'
                    | 'ベ'
                    | 'ボ'
            );
            is_voiced_form.then_some(v)
        }
        _ => None,
    }
}

fn semi_voiced(c: char) -> Option<char> {
    match c {
        'ハ' | 'ヒ' | 'フ' | 'ヘ' | 'ホ' => char::from_u32(c as u32 + 2),
        _ => None,
    }
}

/// Full-width katakana to half-width, splitting voiced marks (ガ → ｶﾞ). Characters with no
/// half-width form are kept.
pub fn fullwidth_to_halfwidth(s: &str) -> String {
    let table: Vec<char> = HALF_TO_FULL.chars().collect();
    let half = |f: char| table.iter().position(|&t| t == f).and_then(|i| char::from_u32(0xFF61 + i as u32));
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if let Some(h) = half(c) {
            out.push(h);
            continue;
        }
        let base = (c == 'ヴ').then_some('ウ').or_else(|| {
            [
                'カ', 'サ', 'タ', 'ハ', 'キ', 'シ', 'チ', 'ヒ', 'ク', 'ス', 'ツ', 'フ', 'ケ', 'セ', 'テ', 'ヘ', 'コ',
                'ソ', 'ト', 'ホ',
            ]
            .into_iter()
            .find(|&b| voiced(b) == Some(c))
        });
        if let Some(h) = base.and_then(half) {
            out.push(h);
            out.push('ﾞ');
            continue;
        }
        let semi = ['ハ', 'ヒ', 'フ', 'ヘ', 'ホ'].into_iter().find(|&b| semi_voiced(b) == Some(c));
        if let Some(h) = semi.and_then(half) {
            out.push(h);
            out.push('ﾟ');
            continue;
        }
        out.push(c);
    }
    out
}

/// Whether `s` is a reading in full-width katakana (with the long-vowel mark and spaces).
pub fn is_katakana(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| ('ァ'..='ヶ').contains(&c) || c == 'ー' || c == 'ヽ' || c == 'ヾ' || c == ' ')
}

const ROMAJI: &[(&str, &str)] = &[
    ("キャ", "kya"),
    ("キュ", "kyu"),
    ("キョ", "kyo"),
    ("シャ", "sha"),
    ("シュ", "shu"),
    ("ショ", "sho"),
    ("チャ", "cha"),
    ("チュ", "chu"),
    ("チョ", "cho"),
    ("ニャ", "nya"),
    ("ニュ", "nyu"),
    ("ニョ", "nyo"),
    ("ヒャ", "hya"),
    ("ヒュ", "hyu"),
    ("ヒョ", "hyo"),
    ("ミャ", "mya"),
    ("ミュ", "myu"),
    ("ミョ", "myo"),
    ("リャ", "rya"),
    ("リュ", "ryu"),
    ("リョ", "ryo"),
    ("ギャ", "gya"),
    ("ギュ", "gyu"),
    ("ギョ", "gyo"),
    ("ジャ", "ja"),
    ("ジュ", "ju"),
    ("ジョ", "jo"),
    ("ヂャ", "ja"),
    ("ヂュ", "ju"),
    ("ヂョ", "jo"),
    ("ビャ", "bya"),
    ("ビュ", "byu"),
    ("ビョ", "byo"),
    ("ピャ", "pya"),
    ("ピュ", "pyu"),
    ("ピョ", "pyo"),
    ("ア", "a"),
    ("イ", "i"),
    ("ウ", "u"),
    ("エ", "e"),
    ("オ", "o"),
    ("カ", "ka"),
    ("キ", "ki"),
    ("ク", "ku"),
    ("ケ", "ke"),
    ("コ", "ko"),
    ("サ", "sa"),
    ("シ", "shi"),
    ("ス", "su"),
    ("セ", "se"),
    ("ソ", "so"),
    ("タ", "ta"),
    ("チ", "chi"),
    ("ツ", "tsu"),
    ("テ", "te"),
    ("ト", "to"),
    ("ナ", "na"),
    ("ニ", "ni"),
    ("ヌ", "nu"),
    ("ネ", "ne"),
    ("ノ", "no"),
    ("ハ", "ha"),
    ("ヒ", "hi"),
    ("フ", "fu"),
    ("ヘ", "he"),
    ("ホ", "ho"),
    ("マ", "ma"),
    ("ミ", "mi"),
    ("ム", "mu"),
    ("メ", "me"),
    ("モ", "mo"),
    ("ヤ", "ya"),
    ("ユ", "yu"),
    ("ヨ", "yo"),
    ("ラ", "ra"),
    ("リ", "ri"),
    ("ル", "ru"),
    ("レ", "re"),
    ("ロ", "ro"),
    ("ワ", "wa"),
    ("ヰ", "i"),
    ("ヱ", "e"),
    ("ヲ", "o"),
    ("ン", "n"),
    ("ガ", "ga"),
    ("ギ", "gi"),
    ("グ", "gu"),
    ("ゲ", "ge"),
    ("ゴ", "go"),
    ("ザ", "za"),
    ("ジ", "ji"),
    ("ズ", "zu"),
    ("ゼ", "ze"),
    ("ゾ", "zo"),
    ("ダ", "da"),
    ("ヂ", "ji"),
    ("ヅ", "zu"),
    ("デ", "de"),
    ("ド", "do"),
    ("バ", "ba"),
    ("ビ", "bi"),
    ("ブ", "bu"),
    ("ベ", "be"),
    ("ボ", "bo"),
    ("パ", "pa"),
    ("ピ", "pi"),
    ("プ", "pu"),
    ("ペ", "pe"),
    ("ポ", "po"),
    ("ヴ", "vu"),
    ("ァ", "a"),
    ("ィ", "i"),
    ("ゥ", "u"),
    ("ェ", "e"),
    ("ォ", "o"),
    ("ャ", "ya"),
    ("ュ", "yu"),
    ("ョ", "yo"),
];

/// Katakana to plain Hepburn romaji as passports and phones write it: ッ doubles the next
/// consonant, ー and long vowels are written as the vowel twice (the caller varies that: satou,
/// sato, satoh, satō are all in use).
pub fn to_romaji(katakana: &str) -> String {
    let chars: Vec<char> = katakana.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let mut double_next = false;
    while i < chars.len() {
        if chars[i] == 'ッ' {
            double_next = true;
            i += 1;
            continue;
        }
        if chars[i] == 'ー' {
            if let Some(last) = out.chars().last() {
                out.push(last);
            }
            i += 1;
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let one: String = chars[i..i + 1].iter().collect();
        let (syllable, used) = match ROMAJI.iter().find(|(k, _)| *k == two) {
            Some((_, r)) if two.chars().count() == 2 => (*r, 2),
            _ => match ROMAJI.iter().find(|(k, _)| *k == one) {
                Some((_, r)) => (*r, 1),
                None => {
                    out.push(chars[i]);
                    i += 1;
                    continue;
                }
            },
        };
        if double_next {
            let first = syllable.chars().next().unwrap_or('t');
            out.push(if syllable.starts_with("ch") { 't' } else { first });
            double_next = false;
        }
        out.push_str(syllable);
        i += used;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_convert_both_ways() {
        assert_eq!(hiragana_to_katakana("さとう はる"), "サトウ ハル");
        assert_eq!(katakana_to_hiragana("ヴァイオリン"), "ゔぁいおりん");
        assert_eq!(halfwidth_to_fullwidth("ｻﾄｳ ｶﾞｯﾍﾟｲ"), "サトウ ガッペイ");
        assert_eq!(halfwidth_to_fullwidth("ｳﾞｨ"), "ヴィ");
        assert_eq!(fullwidth_to_halfwidth("ガッペイ ヴ"), "ｶﾞｯﾍﾟｲ ｳﾞ");
        for s in ["タカハシ", "ワタナベ", "ヅカ", "パピプペポ", "バビブベボ", "ガギグゲゴ", "ダヂヅデド"]
        {
            assert_eq!(halfwidth_to_fullwidth(&fullwidth_to_halfwidth(s)), s);
        }
        assert!(is_katakana("サイトウ キヨ"));
        assert!(!is_katakana("さいとう"));
    }

    #[test]
    fn romaji_is_hepburn() {
        assert_eq!(to_romaji("サトウ"), "satou");
        assert_eq!(to_romaji("シュウイチ"), "shuuichi");
        assert_eq!(to_romaji("ハットリ"), "hattori");
        assert_eq!(to_romaji("マッチャ"), "matcha");
        assert_eq!(to_romaji("キョウコ"), "kyouko");
        assert_eq!(to_romaji("ジュンコ"), "junko");
    }
}
