//! The person CSV: the interchange file a municipality or the central base exports and
//! `central snapshot` reads; `central synth` writes the same format. Columns are documented in
//! docs/person-csv.md and defined once here, in `COLUMNS`.
//!
//! Reading validates every row and reports each problem by line, column and reason; it never
//! stops at the first error and never guesses a value it cannot read. Input may be UTF-8 or
//! Shift_JIS (MS932), detected from the first bytes or named by the caller.

use std::collections::HashSet;
use std::fmt;
use std::io::{Read, Write};

use chrono::NaiveDate;
use encoding_rs::{Encoding, SHIFT_JIS, UTF_8};

use crate::keys::PersonIdKey;
use crate::limits::{CSV_FIELD_BYTES_MAX, CSV_SNIFF_BYTES, CSV_UTF8_MULTIBYTE_PER_INVALID_MIN};
use crate::model::kana;
use crate::model::person::{
    BARTHEL_ITEMS, BURDEN_STAGES, Barthel, CareOffice, CarePlan, DEMENTIA_INDEPENDENCE, DISABILITY_INDEPENDENCE,
    EmergencyContact, PlanNeed, SPECIAL_MEDICAL, WeeklySlot,
};
use crate::model::wareki::{Era, WarekiDate};
use crate::model::{CareLevel, InsuredNumber, InsurerNumber, MunicipalityCode, OfficeNumber, PersonRecord, Sex};

/// The columns, in the order `central synth` writes them. Reading accepts any order.
pub const COLUMNS: [&str; 39] = [
    "insurer_number",
    "card_insurer_number",
    "insured_number",
    "municipality_code",
    "family_name",
    "given_name",
    "family_name_kana",
    "given_name_kana",
    "birth_date",
    "sex",
    "postal_code",
    "address",
    "phone",
    "care_level",
    "certified_on",
    "valid_from",
    "valid_to",
    "benefit_limit_units",
    "copay_ratio",
    "burden_stage",
    "care_office_number",
    "care_office_name",
    "care_manager",
    "care_office_phone",
    "diagnoses",
    "special_medical",
    "disability_independence",
    "dementia_independence",
    "medication_notes",
    "infection",
    "allergies",
    "adl_barthel",
    "equipment",
    "home_modification",
    "plan_wishes",
    "plan_policy",
    "plan_needs",
    "plan_weekly",
    "emergency_contacts",
];

/// Columns a file may leave out (added after files in the format already existed); a missing one
/// reads as empty.
pub const OPTIONAL_COLUMNS: [&str; 1] = ["emergency_contacts"];

/// Separates the items of a list cell (diagnoses, equipment, plan rows).
pub const LIST_SEP: char = '|';
/// Separates the parts of one care-plan row.
pub const PART_SEP: char = ';';

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsvEncoding {
    Utf8,
    ShiftJis,
}

impl CsvEncoding {
    pub fn parse(s: &str) -> Option<CsvEncoding> {
        match s.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "utf8" => Some(CsvEncoding::Utf8),
            "shiftjis" | "sjis" | "ms932" | "cp932" | "windows31j" => Some(CsvEncoding::ShiftJis),
            _ => None,
        }
    }

    fn encoding(self) -> &'static Encoding {
        match self {
            CsvEncoding::Utf8 => UTF_8,
            // encoding_rs's Shift_JIS is the WHATWG one, which is Microsoft's MS932 (Windows-31J),
            // what municipal systems export.
            CsvEncoding::ShiftJis => SHIFT_JIS,
        }
    }

    /// UTF-8 if the sniffed prefix is valid UTF-8 (a sequence cut at the end of the prefix is
    /// allowed), or overwhelmingly so: at least `CSV_UTF8_MULTIBYTE_PER_INVALID_MIN` valid
    /// multi-byte characters per invalid sequence, so that a few stray bytes in a UTF-8 file are
    /// reported where they are rather than the whole file read as Shift_JIS. Otherwise Shift_JIS.
    pub fn detect(prefix: &[u8]) -> CsvEncoding {
        let (mut multibyte, mut invalid) = (0usize, 0usize);
        let mut chunks = prefix.utf8_chunks().peekable();
        while let Some(chunk) = chunks.next() {
            multibyte += chunk.valid().chars().filter(|c| !c.is_ascii()).count();
            let bad = chunk.invalid();
            // The last chunk's "invalid" part may only be a character the prefix cut in two.
            let cut_at_end =
                chunks.peek().is_none() && std::str::from_utf8(bad).is_err_and(|e| e.error_len().is_none());
            if !bad.is_empty() && !cut_at_end {
                invalid += 1;
            }
        }
        if invalid == 0 || multibyte >= invalid * CSV_UTF8_MULTIBYTE_PER_INVALID_MIN {
            CsvEncoding::Utf8
        } else {
            CsvEncoding::ShiftJis
        }
    }
}

impl fmt::Display for CsvEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CsvEncoding::Utf8 => "UTF-8",
            CsvEncoding::ShiftJis => "Shift_JIS (MS932)",
        })
    }
}

/// One problem with one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProblem {
    pub line: u64,
    pub column: String,
    pub reason: String,
}

impl fmt::Display for RowProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}行目 列 {}: {}", self.line, self.column, self.reason)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("CSVファイルを読めません: {0}")]
    Io(#[from] std::io::Error),
    #[error("CSVの見出し行がありません。1行目に列名（{first} など）を書いてください", first = COLUMNS[0])]
    NoHeader,
    #[error("CSVの見出し行に必要な列がありません: {0}（docs/person-csv.md を参照）")]
    MissingColumns(String),
    #[error("CSVの見出し行に知らない列があります: {0}（列名の綴りを確認してください）")]
    UnknownColumns(String),
    #[error("CSVの見出し行で列「{0}」が2回出てきます")]
    DuplicateColumn(String),
    #[error(
        "CSVの見出し行（1行目）に {0} として読めないバイトがあります。ファイルを UTF-8 か Shift_JIS で保存し直してください（違う文字コードで読まれているなら --encoding で指定できます）"
    )]
    UndecodableHeader(CsvEncoding),
}

/// What reading a whole file found.
#[derive(Debug, Default)]
pub struct ReadReport {
    pub encoding: Option<CsvEncoding>,
    pub rows: u64,
    pub valid: u64,
    /// Rows refused, with every problem found in them.
    pub errors: Vec<RowProblem>,
    pub rows_with_errors: u64,
    /// Doubtful but accepted values (check digits whose rule is only likely).
    pub warnings: Vec<RowProblem>,
    pub warning_count: u64,
}

/// Reads a person CSV, calling `each` with every valid record in file order. Invalid rows are
/// reported, not passed on; the caller decides whether any error refuses the file.
pub fn read<R: Read>(
    mut input: R,
    encoding: Option<CsvEncoding>,
    ids: &PersonIdKey,
    max_problems_kept: usize,
    mut each: impl FnMut(PersonRecord),
) -> Result<ReadReport, CsvError> {
    let mut prefix = Vec::with_capacity(CSV_SNIFF_BYTES);
    (&mut input).take(CSV_SNIFF_BYTES as u64).read_to_end(&mut prefix)?;
    let encoding = encoding.unwrap_or_else(|| CsvEncoding::detect(&prefix));
    let decoded = encoding_rs_io::DecodeReaderBytesBuilder::new()
        .encoding(Some(encoding.encoding()))
        .bom_override(true)
        .build(std::io::Cursor::new(prefix).chain(input));
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(decoded);

    let mut report = ReadReport { encoding: Some(encoding), ..ReadReport::default() };
    let mut record = csv::StringRecord::new();
    if !reader.read_record(&mut record).map_err(csv_io)? {
        return Err(CsvError::NoHeader);
    }
    if record.iter().any(|h| h.contains('\u{FFFD}')) {
        return Err(CsvError::UndecodableHeader(encoding));
    }
    let index = header_index(&record)?;
    let width = record.len();
    let mut seen: HashSet<(InsurerNumber, InsuredNumber)> = HashSet::new();

    loop {
        let line = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                // A row the CSV parser cannot read (bad quoting, undecodable bytes): report it and
                // go on with the next one.
                report.rows += 1;
                report.rows_with_errors += 1;
                push(&mut report.errors, max_problems_kept, line, "(行全体)", format!("CSVとして読めません: {e}"));
                continue;
            }
        }
        report.rows += 1;
        if record.iter().all(str::is_empty) {
            report.rows -= 1;
            continue;
        }
        let mut row = Row { record: &record, encoding, index: &index, problems: Vec::new(), warnings: Vec::new() };
        if record.len() != width {
            row.problems.push(("(行全体)", format!("列の数が {} です（見出しは {width} 列）", record.len())));
        }
        let parsed = row.person(ids);
        let dup = parsed.as_ref().is_some_and(|p| !seen.insert((p.insurer_number.clone(), p.insured_number.clone())));
        if dup {
            row.problems.push(("insured_number", "同じ保険者番号と被保険者番号の行が前にもあります（重複）".into()));
        }
        report.warning_count += row.warnings.len() as u64;
        for (col, reason) in row.warnings {
            push(&mut report.warnings, max_problems_kept, line, col, reason);
        }
        match parsed {
            Some(person) if row.problems.is_empty() => {
                report.valid += 1;
                each(person);
            }
            _ => {
                report.rows_with_errors += 1;
                for (col, reason) in row.problems {
                    push(&mut report.errors, max_problems_kept, line, col, reason);
                }
            }
        }
    }
    Ok(report)
}

/// What a cell with a byte the encoding cannot read is told: which encoding it was read as, and
/// how to fix the file. The cell's value is not repeated: it would be garbled.
fn undecodable(encoding: CsvEncoding) -> String {
    format!(
        "{encoding} として読めないバイトがあります。表計算ソフトなどで、ファイルを UTF-8 か Shift_JIS で保存し直してください（違う文字コードで読まれているなら --encoding で指定できます）"
    )
}

fn csv_io(e: csv::Error) -> CsvError {
    CsvError::Io(std::io::Error::other(e.to_string()))
}

fn push(list: &mut Vec<RowProblem>, max: usize, line: u64, column: &str, reason: String) {
    if list.len() < max {
        list.push(RowProblem { line, column: column.to_owned(), reason });
    }
}

fn header_index(header: &csv::StringRecord) -> Result<Vec<Option<usize>>, CsvError> {
    if header.iter().all(|h| h.trim().is_empty()) {
        return Err(CsvError::NoHeader);
    }
    let names: Vec<&str> = header.iter().map(str::trim).collect();
    let unknown: Vec<&str> = names.iter().copied().filter(|n| !COLUMNS.contains(n)).collect();
    if !unknown.is_empty() {
        return Err(CsvError::UnknownColumns(unknown.join(", ")));
    }
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(CsvError::DuplicateColumn((*n).to_owned()));
        }
    }
    let missing: Vec<&str> =
        COLUMNS.iter().copied().filter(|c| !names.contains(c) && !OPTIONAL_COLUMNS.contains(c)).collect();
    if !missing.is_empty() {
        return Err(CsvError::MissingColumns(missing.join(", ")));
    }
    Ok(COLUMNS.iter().map(|c| names.iter().position(|n| n == c)).collect())
}

/// One row being validated: problems and warnings gather as fields are read.
struct Row<'a> {
    record: &'a csv::StringRecord,
    /// What the file is read as, for the message about a byte it cannot hold.
    encoding: CsvEncoding,
    index: &'a [Option<usize>],
    problems: Vec<(&'static str, String)>,
    warnings: Vec<(&'static str, String)>,
}

fn column_number(name: &str) -> usize {
    COLUMNS.iter().position(|c| *c == name).expect("a known column")
}

impl Row<'_> {
    fn raw(&mut self, col: &'static str) -> &str {
        let value = self.index[column_number(col)].and_then(|i| self.record.get(i)).unwrap_or("");
        value.trim()
    }

    /// The cell's text, checked for length, undecodable bytes and control characters.
    fn text(&mut self, col: &'static str) -> String {
        let v = self.raw(col).to_owned();
        if v.len() > CSV_FIELD_BYTES_MAX {
            self.problems.push((col, format!("長すぎます（{}バイト、上限 {CSV_FIELD_BYTES_MAX}）", v.len())));
        } else if v.contains('\u{FFFD}') {
            self.problems.push((col, undecodable(self.encoding)));
        } else if v.chars().any(|c| c.is_control() && c != '\n') {
            self.problems.push((col, "制御文字が含まれています".into()));
        }
        v
    }

    fn required(&mut self, col: &'static str) -> Option<String> {
        let v = self.text(col);
        if v.is_empty() {
            self.problems.push((col, "空です（必須の列）".into()));
            return None;
        }
        Some(v)
    }

    fn parsed<T, E: fmt::Display>(&mut self, col: &'static str, f: impl FnOnce(&str) -> Result<T, E>) -> Option<T> {
        let v = self.required(col)?;
        match f(&v) {
            Ok(t) => Some(t),
            Err(e) => {
                self.problems.push((col, e.to_string()));
                None
            }
        }
    }

    fn optional<T, E: fmt::Display>(&mut self, col: &'static str, f: impl FnOnce(&str) -> Result<T, E>) -> Option<T> {
        let v = self.text(col);
        if v.is_empty() {
            return None;
        }
        match f(&v) {
            Ok(t) => Some(t),
            Err(e) => {
                self.problems.push((col, e.to_string()));
                None
            }
        }
    }

    fn insurer(&mut self, col: &'static str) -> Option<InsurerNumber> {
        let n = self.parsed(col, InsurerNumber::parse)?;
        if !n.check_ok() {
            self.warnings.push((col, format!("保険者番号 {n} の検査数字が想定と合いません（受け入れました）")));
        }
        Some(n)
    }

    fn kana(&mut self, col: &'static str) -> Option<String> {
        let v = self.required(col)?;
        let full = kana::hiragana_to_katakana(&kana::halfwidth_to_fullwidth(&v));
        if !kana::is_katakana(&full) {
            self.problems.push((col, format!("カナ氏名はカタカナで書いてください（入力: {v}）")));
            return None;
        }
        Some(full)
    }

    fn list(&mut self, col: &'static str) -> Vec<String> {
        let v = self.text(col);
        v.split(LIST_SEP).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
    }

    fn one_of(&mut self, col: &'static str, allowed: &[&str]) -> Option<String> {
        self.optional(col, |v| {
            if allowed.contains(&v) {
                Ok(v.to_owned())
            } else {
                Err(format!("「{v}」は使えません（{}のいずれか）", allowed.join("、")))
            }
        })
    }

    fn person(&mut self, ids: &PersonIdKey) -> Option<PersonRecord> {
        let insurer_number = self.insurer("insurer_number");
        let card_insurer_number = self.insurer("card_insurer_number");
        let insured_number = self.parsed("insured_number", InsuredNumber::parse);
        let municipality = self.parsed("municipality_code", MunicipalityCode::parse);
        let family_name = self.required("family_name");
        let given_name = self.required("given_name");
        let family_name_kana = self.kana("family_name_kana");
        let given_name_kana = self.kana("given_name_kana");
        let birth_date = self.parsed("birth_date", parse_date);
        let sex = self.parsed("sex", |v| match v {
            "1" | "男" => Ok(Sex::Male),
            "2" | "女" => Ok(Sex::Female),
            _ => Err(format!("性別は 1（男）か 2（女）です（入力: {v}）")),
        });
        let postal_code = self.text("postal_code");
        let address = self.required("address");
        let phone = self.text("phone");
        let care_level = self.parsed("care_level", |v| {
            CareLevel::from_code(v)
                .ok_or_else(|| format!("要介護状態区分コードではありません（01, 06, 11, 12, 13, 21〜25）: {v}"))
        });
        let certified_on = self.optional("certified_on", parse_date);
        let valid_from = self.optional("valid_from", parse_date);
        let valid_to = self.optional("valid_to", parse_date);
        if let (Some(f), Some(t)) = (valid_from, valid_to)
            && t < f
        {
            self.problems.push(("valid_to", "認定有効期間の終わりが始まりより前です".into()));
        }
        let benefit_limit_units = self.optional("benefit_limit_units", |v| {
            v.parse::<u32>().map_err(|_| format!("単位数（整数）ではありません: {v}"))
        });
        let copay_ratio = self.optional("copay_ratio", |v| match v {
            "1" | "2" | "3" => Ok(v.as_bytes()[0] - b'0'),
            _ => Err(format!("負担割合は 1, 2, 3 のいずれかです: {v}")),
        });
        let burden_stage = self.one_of("burden_stage", &BURDEN_STAGES);
        let care_office = self.care_office();
        let diagnoses = self.list("diagnoses");
        let special_medical = self.list("special_medical");
        for item in &special_medical {
            if !SPECIAL_MEDICAL.contains(&item.as_str()) {
                self.problems.push(("special_medical", format!("特別な医療の項目ではありません: {item}")));
            }
        }
        let disability_independence = self.one_of("disability_independence", &DISABILITY_INDEPENDENCE);
        let dementia_independence = self.one_of("dementia_independence", &DEMENTIA_INDEPENDENCE);
        let medication_notes = self.text("medication_notes");
        let infection = self.text("infection");
        let allergies = self.text("allergies");
        let adl = self.optional("adl_barthel", parse_barthel);
        let equipment = self.list("equipment");
        let home_modification = self.text("home_modification");
        let plan = self.plan();
        let emergency_contacts = self.emergency_contacts();

        let insurer_number = insurer_number?;
        let insured_number = insured_number?;
        Some(PersonRecord {
            person_id: ids.person_id(&insurer_number, &insured_number),
            insurer_number,
            card_insurer_number: card_insurer_number?,
            insured_number,
            municipality: municipality?,
            family_name: family_name?,
            given_name: given_name?,
            family_name_kana: family_name_kana?,
            given_name_kana: given_name_kana?,
            birth_date: birth_date?,
            sex: sex?,
            postal_code,
            address: address?,
            phone,
            care_level: care_level?,
            certified_on,
            valid_from,
            valid_to,
            benefit_limit_units,
            copay_ratio,
            burden_stage,
            care_office,
            diagnoses,
            special_medical,
            disability_independence,
            dementia_independence,
            medication_notes,
            infection,
            allergies,
            adl,
            equipment,
            home_modification,
            plan: plan?,
            emergency_contacts,
        })
    }

    /// 緊急連絡先: entries `氏名;続柄;電話` separated by `|`.
    fn emergency_contacts(&mut self) -> Vec<EmergencyContact> {
        let mut out = Vec::new();
        for entry in self.list("emergency_contacts") {
            let p: Vec<&str> = entry.split(PART_SEP).map(str::trim).collect();
            if p.len() != 3 || p[0].is_empty() || p[2].is_empty() {
                self.problems.push((
                    "emergency_contacts",
                    format!("緊急連絡先は「氏名;続柄;電話」の3項目で、氏名と電話は必須です（入力: {entry}）"),
                ));
                continue;
            }
            out.push(EmergencyContact { name: p[0].into(), relation: p[1].into(), phone: p[2].into() });
        }
        out
    }

    fn care_office(&mut self) -> Option<CareOffice> {
        let number = self.optional("care_office_number", OfficeNumber::parse);
        let name = self.text("care_office_name");
        let care_manager = self.text("care_manager");
        let phone = self.text("care_office_phone");
        let number = number?;
        if !number.check_ok() {
            self.warnings.push((
                "care_office_number",
                format!("事業所番号 {number} の検査数字が想定と合いません（受け入れました）"),
            ));
        }
        if name.is_empty() {
            self.problems.push(("care_office_name", "事業所番号があるのに事業所名が空です".into()));
        }
        Some(CareOffice { number, name, care_manager, phone })
    }

    fn plan(&mut self) -> Option<CarePlan> {
        let wishes = self.text("plan_wishes");
        let policy = self.text("plan_policy");
        let mut ok = true;
        let mut needs = Vec::new();
        for entry in self.list("plan_needs") {
            let p: Vec<&str> = entry.split(PART_SEP).map(str::trim).collect();
            if p.len() != 6 {
                self.problems.push((
                    "plan_needs",
                    format!(
                        "第2表の行は「課題;長期目標;短期目標;サービス;事業者;頻度」の6項目です（{}項目: {entry}）",
                        p.len()
                    ),
                ));
                ok = false;
                continue;
            }
            needs.push(PlanNeed {
                need: p[0].into(),
                long_goal: p[1].into(),
                short_goal: p[2].into(),
                service: p[3].into(),
                provider: p[4].into(),
                frequency: p[5].into(),
            });
        }
        let mut weekly = Vec::new();
        for entry in self.list("plan_weekly") {
            let p: Vec<&str> = entry.split(PART_SEP).map(str::trim).collect();
            let valid = p.len() == 4
                && ["月", "火", "水", "木", "金", "土", "日"].contains(&p[0])
                && is_hhmm(p[1])
                && is_hhmm(p[2])
                && p[1] < p[2];
            if !valid {
                self.problems.push((
                    "plan_weekly",
                    format!("第3表の行は「曜日;開始HH:MM;終了HH:MM;サービス」です（入力: {entry}）"),
                ));
                ok = false;
                continue;
            }
            weekly.push(WeeklySlot { day: p[0].into(), start: p[1].into(), end: p[2].into(), service: p[3].into() });
        }
        ok.then_some(CarePlan { wishes, policy, needs, weekly })
    }
}

fn is_hhmm(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 5
        && b[2] == b':'
        && b[..2].iter().chain(&b[3..]).all(u8::is_ascii_digit)
        && &s[..2] <= "24"
        && &s[3..] <= "59"
}

/// A date as municipal systems write it: 1940-03-02, 1940/3/2, or GYYMMDD in the era calendar
/// (3150302 = 昭和15年3月2日).
pub fn parse_date(v: &str) -> Result<NaiveDate, String> {
    let bad = || format!("日付として読めません（YYYY-MM-DD または和暦 GYYMMDD）: {v}");
    if v.len() == 7 && v.bytes().all(|b| b.is_ascii_digit()) {
        let n = |r: std::ops::Range<usize>| v[r].parse::<u32>().map_err(|_| bad());
        let era = Era::from_code(v.as_bytes()[0] - b'0').ok_or_else(bad)?;
        return WarekiDate { era, year: n(1..3)?, month: n(3..5)?, day: n(5..7)? }.to_date().ok_or_else(bad);
    }
    let parts: Vec<&str> = v.split(['-', '/']).collect();
    if parts.len() != 3 {
        return Err(bad());
    }
    let y: i32 = parts[0].parse().map_err(|_| bad())?;
    let m: u32 = parts[1].parse().map_err(|_| bad())?;
    let d: u32 = parts[2].parse().map_err(|_| bad())?;
    if !(1868..=2100).contains(&y) {
        return Err(format!("年が範囲外です（1868〜2100）: {v}"));
    }
    NaiveDate::from_ymd_opt(y, m, d).ok_or_else(|| format!("存在しない日付です: {v}"))
}

fn parse_barthel(v: &str) -> Result<Barthel, String> {
    let parts: Vec<&str> = v.split(',').map(str::trim).collect();
    if parts.len() != 10 {
        return Err(format!("バーセルインデックスは10項目をカンマ区切りで書きます（{}項目）", parts.len()));
    }
    let mut scores = [0u8; 10];
    for (i, (p, (item, allowed))) in parts.iter().zip(BARTHEL_ITEMS).enumerate() {
        let s: u8 = p.parse().map_err(|_| format!("{item}の点数が数字ではありません: {p}"))?;
        if !allowed.contains(&s) {
            return Err(format!("{item}の点数 {s} はありえません（{allowed:?}）"));
        }
        scores[i] = s;
    }
    Ok(Barthel(scores))
}

/// Writes records as a person CSV in UTF-8, in `COLUMNS` order.
pub struct Writer<W: Write> {
    inner: csv::Writer<W>,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Result<Self, CsvError> {
        let mut inner = csv::WriterBuilder::new().from_writer(out);
        inner.write_record(COLUMNS).map_err(csv_io)?;
        Ok(Writer { inner })
    }

    pub fn write(&mut self, p: &PersonRecord) -> Result<(), CsvError> {
        let date = |d: Option<NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
        let join = |v: &[String]| v.join(&LIST_SEP.to_string());
        let office = p.care_office.as_ref();
        let needs: Vec<String> = p
            .plan
            .needs
            .iter()
            .map(|n| {
                [&n.need, &n.long_goal, &n.short_goal, &n.service, &n.provider, &n.frequency]
                    .map(String::as_str)
                    .join(";")
            })
            .collect();
        let weekly: Vec<String> =
            p.plan.weekly.iter().map(|w| format!("{};{};{};{}", w.day, w.start, w.end, w.service)).collect();
        let contacts: Vec<String> =
            p.emergency_contacts.iter().map(|c| format!("{};{};{}", c.name, c.relation, c.phone)).collect();
        let row: [String; 39] = [
            p.insurer_number.to_string(),
            p.card_insurer_number.to_string(),
            p.insured_number.as_str().to_owned(),
            p.municipality.to_string(),
            p.family_name.clone(),
            p.given_name.clone(),
            p.family_name_kana.clone(),
            p.given_name_kana.clone(),
            p.birth_date.to_string(),
            p.sex.code().to_owned(),
            p.postal_code.clone(),
            p.address.clone(),
            p.phone.clone(),
            p.care_level.code().to_owned(),
            date(p.certified_on),
            date(p.valid_from),
            date(p.valid_to),
            p.benefit_limit_units.map(|u| u.to_string()).unwrap_or_default(),
            p.copay_ratio.map(|r| r.to_string()).unwrap_or_default(),
            p.burden_stage.clone().unwrap_or_default(),
            office.map(|o| o.number.to_string()).unwrap_or_default(),
            office.map(|o| o.name.clone()).unwrap_or_default(),
            office.map(|o| o.care_manager.clone()).unwrap_or_default(),
            office.map(|o| o.phone.clone()).unwrap_or_default(),
            join(&p.diagnoses),
            join(&p.special_medical),
            p.disability_independence.clone().unwrap_or_default(),
            p.dementia_independence.clone().unwrap_or_default(),
            p.medication_notes.clone(),
            p.infection.clone(),
            p.allergies.clone(),
            p.adl.as_ref().map(|a| a.0.map(|s| s.to_string()).join(",")).unwrap_or_default(),
            join(&p.equipment),
            p.home_modification.clone(),
            p.plan.wishes.clone(),
            p.plan.policy.clone(),
            join(&needs),
            join(&weekly),
            join(&contacts),
        ];
        self.inner.write_record(&row).map_err(csv_io)
    }

    pub fn finish(mut self) -> Result<W, CsvError> {
        self.inner.flush()?;
        self.inner.into_inner().map_err(|e| CsvError::Io(std::io::Error::other(e.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "insurer_number,family_name,given_name,address\n\
        172049,能登,花子,石川県輪島市河井町一丁目\n\
        172057,珠洲,太郎,石川県珠洲市飯田町二丁目\n";

    #[test]
    fn plain_utf8_and_ascii_are_utf8() {
        assert_eq!(CsvEncoding::detect(TEXT.as_bytes()), CsvEncoding::Utf8);
        assert_eq!(CsvEncoding::detect(b"insurer_number,given_name\n172049,x\n"), CsvEncoding::Utf8);
        // A character cut by the end of the sniffed prefix is not an error.
        let cut = &TEXT.as_bytes()[..TEXT.find("花").unwrap() + 1];
        assert_eq!(CsvEncoding::detect(cut), CsvEncoding::Utf8);
    }

    /// Finding 9.4: one stray byte in a UTF-8 file made it Shift_JIS.
    #[test]
    fn utf8_with_a_stray_byte_is_still_utf8() {
        let mut bytes = TEXT.as_bytes().to_vec();
        let at = TEXT.find("花子").unwrap();
        bytes.insert(at, 0xFF);
        assert_eq!(CsvEncoding::detect(&bytes), CsvEncoding::Utf8);
    }

    #[test]
    fn genuine_shift_jis_is_shift_jis() {
        let (sjis, _, unmappable) = SHIFT_JIS.encode(TEXT);
        assert!(!unmappable);
        assert_eq!(CsvEncoding::detect(&sjis), CsvEncoding::ShiftJis);
        // Half-width katakana and a little kanji only, the hardest case for a ratio.
        let (sjis, _, _) = SHIFT_JIS.encode("family_name_kana,given_name_kana\nﾉﾄ,ﾊﾅｺ\nｽｽﾞ,ﾀﾛｳ\n輪島,珠洲\n");
        assert_eq!(CsvEncoding::detect(&sjis), CsvEncoding::ShiftJis);
    }
}
