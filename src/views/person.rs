//! Search, the purpose question, the person page and the handover sheet.

use maud::{Markup, html};

use super::{Chrome, csrf_field, layout};
use crate::disclose::{CandidateView, Disclosed, Place, Purpose, verdict_message};
use crate::model::PersonId;
use crate::search::matcher::{Grade, Verdict};

/// What the search form holds (echoed back so nothing typed is lost).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub birth_date: String,
    #[serde(default)]
    pub sex: String,
    #[serde(default)]
    pub place: String,
    #[serde(default)]
    pub insurer_number: String,
    #[serde(default)]
    pub insured_number: String,
    #[serde(default)]
    pub card_birth_date: String,
}

pub struct SearchResults {
    pub verdict: Verdict,
    pub candidates: Vec<CandidateView>,
}

fn text_input(id: &str, label: &str, value: &str, hint: &str, mode: &str) -> Markup {
    html! {
        div.field {
            label for=(id) { (label) }
            @if !hint.is_empty() { span.hint id={(id) "-hint"} { (hint) } }
            input type="text" id=(id) name=(id) value=(value) inputmode=(mode) autocomplete="off"
                aria-describedby=[(!hint.is_empty()).then(|| format!("{id}-hint"))];
        }
    }
}

pub fn search_page(
    chrome: &Chrome<'_>,
    csrf: &str,
    form: &SearchForm,
    error: Option<&str>,
    results: Option<&SearchResults>,
) -> Markup {
    layout(
        "人をさがす",
        chrome,
        html! {
            @if let Some(error) = error { p.error role="alert" { (error) } }
            @if let Some(r) = results { (results_section(r)) }
            section {
                h2 { "名前と生年月日でさがす" }
                form method="post" action="/search" {
                    (csrf_field(csrf))
                    (text_input("name", "氏名（漢字・ひらがな・カタカナ・ローマ字）", &form.name, "聞こえたとおりで構いません。例：たかなし はなこ", "text"))
                    (text_input("birth_date", "生年月日", &form.birth_date, "和暦でも西暦でも。例：昭和13年4月1日、S13.4.1、1938-04-01", "text"))
                    fieldset {
                        legend { "性別（分かれば）" }
                        @for (value, label) in [("", "不明"), ("男", "男"), ("女", "女")] {
                            label.choice {
                                input type="radio" name="sex" value=(value) checked[form.sex == value];
                                (label)
                            }
                        }
                    }
                    (text_input("place", "住んでいた市町村・住所の一部（分かれば）", &form.place, "生年月日が分からないときは、性別とこれが必要です", "text"))
                    button type="submit" { "さがす" }
                }
            }
            section {
                h2 { "被保険者証でさがす" }
                form method="post" action="/search" {
                    (csrf_field(csrf))
                    (text_input("insurer_number", "保険者番号（6桁）", &form.insurer_number, "", "numeric"))
                    (text_input("insured_number", "被保険者番号（10桁）", &form.insured_number, "", "text"))
                    (text_input("card_birth_date", "生年月日", &form.card_birth_date, "", "text"))
                    button type="submit" { "証の番号でさがす" }
                }
            }
        },
    )
}

fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Likely => "likely",
        Verdict::Ambiguous => "ambiguous",
        Verdict::Possible => "possible",
        Verdict::NotFound => "not-found",
    }
}

fn grade_label(g: Grade) -> &'static str {
    match g {
        Grade::Certain => "一致",
        Grade::Probable => "ほぼ一致",
        Grade::Possible => "可能性あり",
    }
}

fn results_section(r: &SearchResults) -> Markup {
    html! {
        section.results aria-live="polite" {
            h2 { "検索結果" }
            p class={"verdict verdict-" (verdict_name(r.verdict))} {
                (verdict_message(r.verdict))
            }
            @if !r.candidates.is_empty() {
                ol.candidates {
                    @for c in &r.candidates {
                        li {
                            p.name { (c.name) " " span.kana { "（" (c.kana) "）" } }
                            p { (c.birth_date_wareki) "（" (c.birth_date) "）・" (c.sex) "・" (c.municipality) }
                            p.grade { (grade_label(c.grade)) }
                            a.button href={"/person/" (c.person_id)} { "この人の記録を開く" }
                        }
                    }
                }
                p.hint { "本人や家族に名前・生年月日・住所を確かめてから開いてください。開くと記録に残ります。" }
            }
        }
    }
}

/// Asked before a record opens: why, for the audit log.
pub fn purpose_page(chrome: &Chrome<'_>, csrf: &str, person_id: &PersonId, error: Option<&str>) -> Markup {
    layout(
        "記録を開く目的",
        chrome,
        html! {
            @if let Some(error) = error { p.error role="alert" { (error) } }
            section {
                p { "この人の記録を開く目的を選んでください。目的は監査記録に残り、本人も後で確かめられます。" }
                form method="post" action={"/person/" (person_id.as_str()) "/purpose"} {
                    (csrf_field(csrf))
                    fieldset {
                        legend { "目的" }
                        @for (value, label) in Purpose::CHOICES {
                            label.choice {
                                input type="radio" name="purpose" value=(value) required;
                                (label)
                            }
                        }
                    }
                    div.field {
                        label for="purpose_text" { "「その他」の内容" }
                        input type="text" id="purpose_text" name="purpose_text" autocomplete="off";
                    }
                    button type="submit" { "記録を開く" }
                }
            }
        },
    )
}

/// A field event as the pages show it.
pub struct EventView {
    pub at: String,
    pub by: String,
    pub place: String,
    pub note: String,
}

fn dates(d: Option<chrono::NaiveDate>) -> String {
    d.map_or_else(|| "—".to_owned(), |d| crate::model::wareki::to_wareki(d).map_or(d.to_string(), |w| w.kanji()))
}

fn or_none(s: &str) -> &str {
    if s.trim().is_empty() { "記載なし" } else { s }
}

/// The sections of a disclosed record, for the person page and the handover sheet alike.
fn record_sections(d: &Disclosed) -> Markup {
    html! {
        @if let Some(c) = &d.card {
            section #card {
                h2 { "被保険者証" }
                dl {
                    dt { "氏名" } dd.big { (c.name) }
                    dt { "カナ" } dd { (c.kana) }
                    dt { "生年月日" } dd { (c.birth_date_wareki) "（" (c.birth_date) "）" (c.age) "歳" }
                    dt { "性別" } dd { (c.sex) }
                    dt { "保険者" } dd { (c.municipality) "（保険者番号 " (c.insurer_number) "、証記載 " (c.card_insurer_number) "）" }
                    dt { "被保険者番号" } dd.mono { (c.insured_number) }
                }
            }
        }
        @if let Some(c) = &d.certification {
            section #certification {
                h2 { "要介護認定" }
                dl {
                    dt { "要介護状態区分" } dd.big { (c.care_level) }
                    dt { "認定日" } dd { (dates(c.certified_on)) }
                    dt { "有効期間" } dd { (dates(c.valid_from)) " 〜 " (dates(c.valid_to)) @if !c.valid_today { " " strong.warn { "（今日は有効期間外）" } } }
                    dt { "区分支給限度基準額" } dd { @match c.benefit_limit_units { Some(u) => { (u) "単位/月" }, None => "—" } }
                }
            }
        }
        @if let Some(b) = &d.burden {
            section #burden {
                h2 { "負担割合・負担限度額" }
                dl {
                    dt { "負担割合" } dd { @match b.copay_ratio { Some(r) => { (r) "割" }, None => "—" } }
                    dt { "負担限度額（利用者負担段階）" } dd { @match &b.burden_stage { Some(s) => { "第" (s) "段階" }, None => "認定なし" } }
                }
            }
        }
        @if let Some(c) = &d.contact {
            section #contact {
                h2 { "住所・連絡先" }
                dl {
                    dt { "住所" } dd { "〒" (c.postal_code) " " (c.address) }
                    dt { "電話" } dd { (or_none(&c.phone)) }
                    dt { "緊急連絡先" }
                    dd {
                        @if c.emergency_contacts.is_empty() { "記載なし" }
                        @for e in &c.emergency_contacts { (e.name) "（" (e.relation) "）" (e.phone) br; }
                    }
                }
            }
        }
        @if let Some(m) = &d.care_manager {
            section #care-manager {
                h2 { "ケアマネジャー" }
                dl {
                    dt { "居宅介護支援事業所" } dd { (m.office_name) "（" (m.office_number) "）" }
                    dt { "担当" } dd { (m.care_manager) }
                    dt { "電話" } dd { (m.phone) }
                }
            }
        }
        @if let Some(p) = &d.care_plan {
            section #care-plan {
                h2 { "ケアプラン・利用中のサービス" }
                dl {
                    dt { "本人・家族の意向" } dd { (or_none(&p.wishes)) }
                    dt { "援助の方針" } dd { (or_none(&p.policy)) }
                }
                @if !p.needs.is_empty() {
                    h3 { "課題・目標とサービス" }
                    ul {
                        @for n in &p.needs {
                            li { strong { (n.need) } br; "長期目標：" (n.long_goal) br; "短期目標：" (n.short_goal) br; "サービス：" (n.service) "（" (n.provider) "、" (n.frequency) "）" }
                        }
                    }
                }
                @if !p.weekly.is_empty() {
                    h3 { "週間予定" }
                    table {
                        thead { tr { th scope="col" { "曜日" } th scope="col" { "時間" } th scope="col" { "サービス" } } }
                        tbody { @for w in &p.weekly { tr { td { (w.day) } td { (w.start) "〜" (w.end) } td { (w.service) } } } }
                    }
                }
            }
        }
        @if let Some(m) = &d.medical {
            section #medical {
                h2 { "医療（主治医意見書より）" }
                dl {
                    dt { "特別な医療" } dd.big { @if m.special_medical.is_empty() { "なし" } @else { (m.special_medical.join("、")) } }
                    dt { "診断名" } dd { @if m.diagnoses.is_empty() { "記載なし" } @else { (m.diagnoses.join("、")) } }
                    dt { "服薬" } dd { (or_none(&m.medication_notes)) }
                    dt { "アレルギー" } dd { (or_none(&m.allergies)) }
                    dt { "感染症" } dd { (or_none(&m.infection)) }
                    dt { "障害高齢者の日常生活自立度" } dd { (m.disability_independence.as_deref().unwrap_or("—")) }
                    dt { "認知症高齢者の日常生活自立度" } dd { (m.dementia_independence.as_deref().unwrap_or("—")) }
                }
            }
        }
        @if let Some(a) = &d.adl {
            section #adl {
                h2 { "ADL（バーセルインデックス）" }
                p { "合計 " strong { (a.total) } " / 100" }
                dl.adl { @for (item, score) in &a.items { dt { (item) } dd { (score) } } }
            }
        }
        @if let Some(e) = &d.equipment {
            section #equipment {
                h2 { "福祉用具・住宅改修" }
                dl {
                    dt { "福祉用具" } dd { @if e.equipment.is_empty() { "なし" } @else { (e.equipment.join("、")) } }
                    dt { "住宅改修" } dd { (or_none(&e.home_modification)) }
                }
            }
        }
    }
}

fn events_list(events: &[EventView]) -> Markup {
    html! {
        @if events.is_empty() {
            p { "まだ記録はありません。" }
        } @else {
            ol.events {
                @for e in events {
                    li { strong { (e.place) } " " span.when { (e.at) "・" (e.by) } @if !e.note.is_empty() { p.note { (e.note) } } }
                }
            }
        }
    }
}

pub struct PersonPage<'a> {
    pub disclosed: &'a Disclosed,
    pub purpose: &'a str,
    pub events: &'a [EventView],
    /// Events sealed under an earlier snapshot's data key, which this node cannot read now.
    pub unreadable_events: usize,
    pub error: Option<&'a str>,
    pub coordinator: bool,
}

pub fn person_page(chrome: &Chrome<'_>, csrf: &str, p: &PersonPage<'_>) -> Markup {
    let d = p.disclosed;
    let title = d.card.as_ref().map_or_else(|| "記録".to_owned(), |c| format!("{} さんの記録", c.name));
    layout(
        &title,
        chrome,
        html! {
            p.purpose { "目的：" (p.purpose) "（この閲覧は記録されています）" }
            p.actions {
                a.button href={"/person/" (d.person_id) "/handover"} { "申し送り書を開く（印刷用）" }
                @if p.coordinator { " " a href={"/manage/audit?person=" (d.person_id)} { "この人の閲覧履歴" } }
            }
            (record_sections(d))
            section #whereabouts {
                h2 { "いまの居場所と申し送り" }
                @if let Some(error) = p.error { p.error role="alert" { (error) } }
                (events_list(p.events))
                @if p.unreadable_events > 0 { p.hint { "以前のスナップショットのときの記録が " (p.unreadable_events) " 件あります（今のデータ鍵では読めません）。" } }
                form method="post" action={"/person/" (d.person_id) "/events"} {
                    (csrf_field(csrf))
                    fieldset {
                        legend { "いまの居場所" }
                        @for place in Place::ALL {
                            label.choice { input type="radio" name="place" value=(place.name()) required; (place.label()) }
                        }
                    }
                    div.field {
                        label for="place_name" { "施設・病院などの名前" }
                        input type="text" id="place_name" name="place_name" autocomplete="off";
                    }
                    div.field {
                        label for="note" { "申し送り（次の担当者へ）" }
                        textarea id="note" name="note" rows="4" {}
                    }
                    button type="submit" { "居場所を記録する" }
                }
            }
        },
    )
}

pub struct HandoverSheet<'a> {
    pub disclosed: &'a Disclosed,
    pub events: &'a [EventView],
    pub purpose: &'a str,
    pub printed_at: &'a str,
    pub printed_by: &'a str,
    pub node_id: &'a str,
    pub audit_seq: u64,
}

/// The A4 handover sheet for the receiving facility (print CSS in style.css).
pub fn handover_sheet(chrome: &Chrome<'_>, h: &HandoverSheet<'_>) -> Markup {
    layout(
        "申し送り書",
        chrome,
        html! {
            div.sheet {
                p.noprint { "ブラウザーの印刷機能（A4）で印刷してください。" }
                p.meta { "作成 " (h.printed_at) "・" (h.printed_by) "・ノード " (h.node_id) "・監査番号 " (h.audit_seq) "・目的：" (h.purpose) }
                section #handover-events {
                    h2 { "居場所と申し送り" }
                    (events_list(h.events))
                }
                (record_sections(h.disclosed))
                p.meta { "この書面は災害時の引き継ぎのためのものです。目的外に使わず、不要になったら確実に廃棄してください。" }
            }
        },
    )
}
