//! The Japanese era calendar (和暦): eras (明治 1868-01-25 … 令和 2019-05-01), their first days,
//! and conversion both ways; the digit of each era in a `GYYMMDD` date (1 明治 … 5 令和) is the
//! one care paperwork uses. Parsing what people type lives with the matcher (docs/matching.md);
//! here are the facts.

use chrono::{Datelike, NaiveDate};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Era {
    Meiji,
    Taisho,
    Showa,
    Heisei,
    Reiwa,
}

impl Era {
    pub const ALL: [Era; 5] = [Era::Meiji, Era::Taisho, Era::Showa, Era::Heisei, Era::Reiwa];

    /// 1 明治 … 5 令和, as in GYYMMDD dates such as 3150302.
    pub fn code(self) -> u8 {
        self as u8 + 1
    }

    pub fn from_code(c: u8) -> Option<Era> {
        Era::ALL.get(usize::from(c).checked_sub(1)?).copied()
    }

    pub fn kanji(self) -> &'static str {
        match self {
            Era::Meiji => "明治",
            Era::Taisho => "大正",
            Era::Showa => "昭和",
            Era::Heisei => "平成",
            Era::Reiwa => "令和",
        }
    }

    /// The one-letter abbreviation (M, T, S, H, R).
    pub fn letter(self) -> char {
        match self {
            Era::Meiji => 'M',
            Era::Taisho => 'T',
            Era::Showa => 'S',
            Era::Heisei => 'H',
            Era::Reiwa => 'R',
        }
    }

    /// The first day (JIS X 0301; 明治 legally from 1868-01-01, which `to_date` accepts).
    pub fn first_day(self) -> NaiveDate {
        let (y, m, d) = match self {
            Era::Meiji => (1868, 1, 25),
            Era::Taisho => (1912, 7, 30),
            Era::Showa => (1926, 12, 25),
            Era::Heisei => (1989, 1, 8),
            Era::Reiwa => (2019, 5, 1),
        };
        // Constant, valid dates.
        NaiveDate::from_ymd_opt(y, m, d).expect("valid era date")
    }

    /// Western year of the era's year 1 minus one: year = era year + offset.
    pub fn year_offset(self) -> i32 {
        self.first_day().year() - 1
    }

    fn next(self) -> Option<Era> {
        Era::ALL.get(self as usize + 1).copied()
    }
}

/// A date in the era calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarekiDate {
    pub era: Era,
    pub year: u32,
    pub month: u32,
    pub day: u32,
}

/// The era a date is in (the newer era from its first day on).
pub fn era_of(date: NaiveDate) -> Option<Era> {
    Era::ALL.iter().rev().find(|e| date >= e.first_day()).copied().or_else(|| {
        // 1868-01-01 … 01-24 is still 明治 in law.
        (date.year() == 1868).then_some(Era::Meiji)
    })
}

pub fn to_wareki(date: NaiveDate) -> Option<WarekiDate> {
    let era = era_of(date)?;
    Some(WarekiDate {
        era,
        year: u32::try_from(date.year() - era.year_offset()).ok()?,
        month: date.month(),
        day: date.day(),
    })
}

impl WarekiDate {
    /// The western date, if this era date exists. The last day of an era may also be written as
    /// year 1 of the next (大正15年12月25日 = 昭和元年12月25日), and year 1 of an era may name a
    /// day just before its first day in the same western year; both are accepted, as people write
    /// them, but a date past the era's end (昭和64年2月1日) is not.
    pub fn to_date(self) -> Option<NaiveDate> {
        // Checked: a typed year such as 令和2147483647年 must be "no such date", not a panic.
        let year = self.era.year_offset().checked_add(i32::try_from(self.year).ok()?)?;
        let date = NaiveDate::from_ymd_opt(year, self.month, self.day)?;
        let earliest = if self.era == Era::Meiji {
            NaiveDate::from_ymd_opt(1868, 1, 1)?
        } else {
            NaiveDate::from_ymd_opt(self.era.first_day().year(), 1, 1)?
        };
        if date < earliest || self.year == 0 {
            return None;
        }
        if let Some(next) = self.era.next()
            && date > next.first_day()
        {
            return None;
        }
        Some(date)
    }

    /// 昭和15年3月2日, with 元年 for year 1.
    pub fn kanji(&self) -> String {
        let year = if self.year == 1 { "元".to_owned() } else { self.year.to_string() };
        format!("{}{}年{}月{}日", self.era.kanji(), year, self.month, self.day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_era_year_too_large_for_any_calendar_is_no_date_not_a_panic() {
        for era in [Era::Meiji, Era::Taisho, Era::Showa, Era::Heisei, Era::Reiwa] {
            for year in [i32::MAX as u32, i32::MAX as u32 - 7, u32::MAX] {
                assert_eq!(WarekiDate { era, year, month: 1, day: 1 }.to_date(), None, "{era:?} {year}");
            }
        }
    }

    fn d(y: i32, m: u32, dd: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, dd).unwrap()
    }

    #[test]
    fn era_boundaries() {
        assert_eq!(to_wareki(d(1940, 3, 2)).unwrap().kanji(), "昭和15年3月2日");
        assert_eq!(to_wareki(d(1926, 12, 25)).unwrap().kanji(), "昭和元年12月25日");
        assert_eq!(to_wareki(d(1926, 12, 24)).unwrap().kanji(), "大正15年12月24日");
        assert_eq!(to_wareki(d(1989, 1, 7)).unwrap().kanji(), "昭和64年1月7日");
        assert_eq!(to_wareki(d(1989, 1, 8)).unwrap().kanji(), "平成元年1月8日");
        assert_eq!(to_wareki(d(1912, 7, 29)).unwrap().era, Era::Meiji);
        assert_eq!(to_wareki(d(2019, 5, 1)).unwrap().kanji(), "令和元年5月1日");
    }

    #[test]
    fn era_dates_convert_back_and_refuse_impossible_ones() {
        let w = |era, year, month, day| WarekiDate { era, year, month, day }.to_date();
        assert_eq!(w(Era::Showa, 15, 3, 2), Some(d(1940, 3, 2)));
        assert_eq!(w(Era::Taisho, 15, 12, 25), Some(d(1926, 12, 25)));
        assert_eq!(w(Era::Showa, 1, 12, 25), Some(d(1926, 12, 25)));
        assert_eq!(w(Era::Showa, 64, 1, 7), Some(d(1989, 1, 7)));
        assert_eq!(w(Era::Showa, 64, 2, 1), None);
        assert_eq!(w(Era::Showa, 0, 1, 1), None);
        assert_eq!(w(Era::Taisho, 2, 2, 30), None);
        assert_eq!(Era::from_code(3), Some(Era::Showa));
        assert_eq!(Era::from_code(0), None);
        assert_eq!(Era::from_code(6), None);
    }
}
