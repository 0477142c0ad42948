//! Birth dates as staff type them after hearing them: western or 和暦, with era names,
//! abbreviations or letters, GYYMMDD, kanji numerals, 元年, a year without its era, and day and
//! month possibly swapped. Pure: the reference day is a parameter.

use chrono::{Datelike, NaiveDate};
use unicode_normalization::UnicodeNormalization;

use crate::model::wareki::{Era, WarekiDate};

/// How a reading of the input was arrived at: the matcher trusts the first kind most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateHow {
    /// As written (western, or with its era).
    Exact,
    /// The year had no era; this is one era it fits.
    EraGuessed,
    /// Day and month read the other way round.
    Swapped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateReading {
    pub date: NaiveDate,
    pub how: DateHow,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    #[error("生年月日が読めません（例: 昭和15年3月2日、S15.3.2、1940-03-02、3150302）: {0}")]
    Unreadable(String),
    #[error("そのような日付はありません: {0}")]
    Impossible(String),
}

/// Earliest birth year considered for a year written without its era.
const ERALESS_EARLIEST_YEAR: i32 = 1890;
/// Youngest age considered for a year written without its era (care recipients are 40 or older;
/// a margin for typing errors).
const ERALESS_MIN_AGE_YEARS: i32 = 30;

fn kanji_digit(c: char) -> Option<u32> {
    "〇一二三四五六七八九".chars().position(|d| d == c).map(|p| p as u32)
}

/// Replaces runs of kanji numerals (and 元) with ASCII digits: 十五 → 15, 二十 → 20, 三十一 → 31.
fn kanji_numerals_to_digits(s: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '元' {
            out.push('1');
            i += 1;
            continue;
        }
        if kanji_digit(c).is_none() && c != '十' {
            out.push(c);
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && (kanji_digit(chars[i]).is_some() || chars[i] == '十') {
            i += 1;
        }
        let run = &chars[start..i];
        let value = match run.iter().position(|&x| x == '十') {
            Some(p) => {
                let tens =
                    if p == 0 { 1 } else { run[..p].iter().filter_map(|&x| kanji_digit(x)).fold(0, |a, d| a * 10 + d) };
                let ones = run[p + 1..].iter().filter_map(|&x| kanji_digit(x)).fold(0, |a, d| a * 10 + d);
                tens * 10 + ones
            }
            None => run.iter().filter_map(|&x| kanji_digit(x)).fold(0, |a, d| a * 10 + d),
        };
        out.push_str(&value.to_string());
    }
    out
}

/// The era a written prefix names: 昭和, 昭, S, s.
fn era_prefix(s: &str) -> Option<(Era, &str)> {
    for era in Era::ALL {
        let full = era.kanji();
        let short: String = full.chars().take(1).collect();
        let letter = era.letter();
        if let Some(rest) = s.strip_prefix(full) {
            return Some((era, rest));
        }
        if let Some(rest) = s.strip_prefix(short.as_str()) {
            return Some((era, rest));
        }
        if let Some(rest) = s.strip_prefix(letter).or_else(|| s.strip_prefix(letter.to_ascii_lowercase())) {
            return Some((era, rest));
        }
    }
    None
}

fn numbers(s: &str) -> Vec<u32> {
    s.split(|c: char| !c.is_ascii_digit()).filter(|p| !p.is_empty()).filter_map(|p| p.parse().ok()).collect()
}

fn western(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(y, m, d)
}

/// The year as written: with its era, or western (era None), or bare (era None, under 1000).
type WrittenYear = (Option<Era>, i32);

/// Every plausible reading of `input`, the most literal first. `today` bounds the years a
/// year without an era may mean.
pub fn parse_birth_date(input: &str, today: NaiveDate) -> Result<Vec<DateReading>, DateError> {
    let unreadable = || DateError::Unreadable(input.to_owned());
    let s: String = input.nfkc().collect::<String>();
    let s = kanji_numerals_to_digits(s.trim());
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if s.is_empty() {
        return Err(unreadable());
    }
    let mut readings: Vec<DateReading> = Vec::new();
    let push = |date: NaiveDate, how: DateHow, readings: &mut Vec<DateReading>| {
        if !readings.iter().any(|r| r.date == date) {
            readings.push(DateReading { date, how });
        }
    };

    let (primary, y, m, d): (Option<NaiveDate>, Option<WrittenYear>, u32, u32) =
        if let Some((era, rest)) = era_prefix(&s) {
            let n = numbers(rest);
            let [y, m, d] = n[..] else { return Err(unreadable()) };
            let date = WarekiDate { era, year: y, month: m, day: d }.to_date();
            if date.is_none() && (WarekiDate { era, year: y, month: d, day: m }).to_date().is_none() {
                return Err(DateError::Impossible(input.to_owned()));
            }
            (date, Some((Some(era), y as i32)), m, d)
        } else if s.len() == 7 && s.bytes().all(|b| b.is_ascii_digit()) {
            // GYYMMDD: 3150302 = 昭和15年3月2日.
            let digit = |r: std::ops::Range<usize>| s[r].parse::<u32>().map_err(|_| unreadable());
            let era = Era::from_code(s.as_bytes()[0] - b'0').ok_or_else(unreadable)?;
            let (y, m, d) = (digit(1..3)?, digit(3..5)?, digit(5..7)?);
            let date = WarekiDate { era, year: y, month: m, day: d }.to_date();
            if date.is_none() {
                return Err(DateError::Impossible(input.to_owned()));
            }
            (date, Some((Some(era), y as i32)), m, d)
        } else if s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()) {
            let digit = |r: std::ops::Range<usize>| s[r].parse::<u32>().map_err(|_| unreadable());
            let (y, m, d) = (digit(0..4)? as i32, digit(4..6)?, digit(6..8)?);
            (western(y, m, d), Some((None, y)), m, d)
        } else {
            let n = numbers(&s);
            let [y, m, d] = n[..] else { return Err(unreadable()) };
            if y >= 1000 {
                (western(y as i32, m, d), Some((None, y as i32)), m, d)
            } else {
                // A year with no era: every era it fits, for a plausible age.
                let latest = today.year() - ERALESS_MIN_AGE_YEARS;
                let mut any = false;
                for era in Era::ALL {
                    if let Some(date) = (WarekiDate { era, year: y, month: m, day: d }).to_date()
                        && (ERALESS_EARLIEST_YEAR..=latest).contains(&date.year())
                    {
                        push(date, DateHow::EraGuessed, &mut readings);
                        any = true;
                    }
                }
                // Two digits may also be a western year of the 1900s ("40/3/2").
                if let Some(date) = western(1900 + y as i32, m, d).filter(|_| y < 100)
                    && (ERALESS_EARLIEST_YEAR..=latest).contains(&date.year())
                {
                    push(date, DateHow::EraGuessed, &mut readings);
                    any = true;
                }
                if !any && m > 12 && d <= 12 {
                    // Only the swapped reading can exist; fall through to add it below.
                } else if !any {
                    return Err(DateError::Impossible(input.to_owned()));
                }
                (None, Some((None, y as i32)), m, d)
            }
        };

    if let Some(date) = primary {
        push(date, DateHow::Exact, &mut readings);
    }
    // Day and month the other way round: offered beside a literal reading that exists, or
    // instead of one that cannot exist only because its month is over 12. A date past the end
    // of its era (昭和64年2月1日) is not rescued by swapping.
    let literal_exists = primary.is_some() || !readings.is_empty();
    if d <= 12 && d != m && (literal_exists || m > 12) {
        let swapped: Vec<NaiveDate> = match y {
            Some((Some(era), year)) => {
                WarekiDate { era, year: year as u32, month: d, day: m }.to_date().into_iter().collect()
            }
            Some((None, year)) if year >= 1000 => western(year, d, m).into_iter().collect(),
            Some((None, year)) => {
                let latest = today.year() - ERALESS_MIN_AGE_YEARS;
                Era::ALL
                    .iter()
                    .filter_map(|&era| WarekiDate { era, year: year as u32, month: d, day: m }.to_date())
                    .chain(western(1900 + year, d, m))
                    .filter(|date| (ERALESS_EARLIEST_YEAR..=latest).contains(&date.year()))
                    .collect()
            }
            None => Vec::new(),
        };
        for date in swapped {
            push(date, DateHow::Swapped, &mut readings);
        }
    }
    if readings.is_empty() {
        return Err(DateError::Impossible(input.to_owned()));
    }
    readings.retain(|r| r.date <= today);
    if readings.is_empty() {
        return Err(DateError::Impossible(input.to_owned()));
    }
    Ok(readings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, dd: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, dd).unwrap()
    }

    fn today() -> NaiveDate {
        d(2026, 10, 1)
    }

    fn first(s: &str) -> NaiveDate {
        parse_birth_date(s, today()).unwrap_or_else(|e| panic!("{s}: {e}"))[0].date
    }

    #[test]
    fn every_written_form_reads_as_the_same_day() {
        let forms = [
            "昭和15年3月2日",
            "昭和１５年３月２日",
            "昭15.3.2",
            "S15.3.2",
            "s15/3/2",
            "S15/3/2",
            "3150302",
            "昭和十五年三月二日",
            "1940-03-02",
            "1940/3/2",
            "19400302",
            "１９４０年３月２日",
            " 昭和 15年 3月 2日 ",
        ];
        for f in forms {
            assert_eq!(first(f), d(1940, 3, 2), "{f}");
            assert_eq!(parse_birth_date(f, today()).unwrap()[0].how, DateHow::Exact, "{f}");
        }
    }

    #[test]
    fn era_boundaries_and_gannen() {
        assert_eq!(first("昭和元年12月25日"), d(1926, 12, 25));
        assert_eq!(first("大正15年12月24日"), d(1926, 12, 24));
        assert_eq!(first("平成元年1月8日"), d(1989, 1, 8));
        assert_eq!(first("昭和64年1月7日"), d(1989, 1, 7));
        assert_eq!(first("明治45年7月29日"), d(1912, 7, 29));
        assert_eq!(first("大正元年7月30日"), d(1912, 7, 30));
        assert_eq!(first("T5.5.5"), d(1916, 5, 5));
        assert_eq!(first("M44.1.1"), d(1911, 1, 1));
        assert_eq!(first("大3.10.20"), d(1914, 10, 20));
        assert_eq!(first("2050101"), d(1916, 1, 1));
    }

    #[test]
    fn impossible_dates_are_refused() {
        for bad in ["昭和64年2月1日", "平成0年1月1日", "昭和15年2月30日", "3641301", "1940-13-45", "2030-01-01"]
        {
            assert!(parse_birth_date(bad, today()).is_err(), "{bad}");
        }
        assert!(matches!(parse_birth_date("そのうち", today()), Err(DateError::Unreadable(_))));
        assert!(matches!(parse_birth_date("", today()), Err(DateError::Unreadable(_))));
    }

    #[test]
    fn a_year_without_its_era_offers_each_era_that_fits_a_living_elder() {
        let r = parse_birth_date("15年3月2日", today()).unwrap();
        let dates: Vec<NaiveDate> = r.iter().map(|x| x.date).collect();
        assert!(dates.contains(&d(1940, 3, 2)), "昭和15: {dates:?}");
        assert!(dates.contains(&d(1926, 3, 2)), "大正15: {dates:?}");
        assert!(!dates.contains(&d(2003, 3, 2)), "平成15 is too young: {dates:?}");
        assert!(r.iter().all(|x| x.how != DateHow::Exact));
    }

    #[test]
    fn day_and_month_swapped_is_offered_after_the_literal_reading() {
        let r = parse_birth_date("S15.3.2", today()).unwrap();
        assert_eq!(r[0], DateReading { date: d(1940, 3, 2), how: DateHow::Exact });
        assert!(r.contains(&DateReading { date: d(1940, 2, 3), how: DateHow::Swapped }));
        // 13 cannot be a month: only one reading.
        assert_eq!(parse_birth_date("1940/3/13", today()).unwrap().len(), 1);
        // Written the wrong way round with a day over 12 in the month place.
        assert_eq!(parse_birth_date("1940/13/3", today()).unwrap()[0].date, d(1940, 3, 13));
    }

    #[test]
    fn kanji_numerals() {
        assert_eq!(kanji_numerals_to_digits("二十三"), "23");
        assert_eq!(kanji_numerals_to_digits("十"), "10");
        assert_eq!(kanji_numerals_to_digits("三十一日"), "31日");
        assert_eq!(kanji_numerals_to_digits("元年"), "1年");
        assert_eq!(kanji_numerals_to_digits("一九四〇"), "1940");
    }
}
