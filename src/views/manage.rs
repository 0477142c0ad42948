//! Signing in, and the coordinator's pages: staff, authorization, clock, audit log.

use maud::{Markup, html};

use super::{Chrome, csrf_field, layout, qr_image};
use crate::authz::Role;

pub fn login_page(chrome: &Chrome<'_>, csrf: &str, staff_id: &str, error: Option<&str>) -> Markup {
    layout(
        "ログイン",
        chrome,
        html! {
            @if let Some(error) = error { p.error role="alert" { (error) } }
            section {
                p { "コーディネーターから渡された職員IDと、初回はワンタイムコード、2回目からは自分で決めた PIN かパスフレーズを入力してください。" }
                form method="post" action="/login" {
                    (csrf_field(csrf))
                    div.field {
                        label for="staff_id" { "職員ID" }
                        input type="text" id="staff_id" name="staff_id" value=(staff_id) autocomplete="username" autocapitalize="none" required;
                    }
                    div.field {
                        label for="secret" { "コード・PIN・パスフレーズ" }
                        input type="password" id="secret" name="secret" autocomplete="current-password" required;
                    }
                    button type="submit" { "ログイン" }
                }
            }
        },
    )
}

pub fn set_secret_page(chrome: &Chrome<'_>, csrf: &str, error: Option<&str>) -> Markup {
    layout(
        "PIN の設定",
        chrome,
        html! {
            @if let Some(error) = error { p.error role="alert" { (error) } }
            section {
                p { "ワンタイムコードは今回限りです。次からログインに使う PIN（数字6桁以上）かパスフレーズ（8文字以上）を決めてください。" }
                form method="post" action="/pin" {
                    (csrf_field(csrf))
                    div.field {
                        label for="secret" { "新しい PIN・パスフレーズ" }
                        input type="password" id="secret" name="secret" autocomplete="new-password" required;
                    }
                    div.field {
                        label for="again" { "もう一度" }
                        input type="password" id="again" name="again" autocomplete="new-password" required;
                    }
                    button type="submit" { "設定する" }
                }
            }
        },
    )
}

pub struct StaffLine {
    pub id: String,
    pub name: String,
    pub facility: String,
    pub role: Role,
    pub enrolled_at: String,
    /// "有効", "取り消し済み (…)", "認可終了", "コード未使用".
    pub state: String,
    pub active: bool,
    pub revocable: bool,
}

pub struct ManageView {
    pub staff: Vec<StaffLine>,
    /// The authorization in force, in words, or why there is none.
    pub authorization: String,
    pub authorization_active: bool,
    pub facilities: String,
    pub now: String,
    pub message: Option<String>,
    pub error: Option<String>,
}

pub fn manage_page(chrome: &Chrome<'_>, csrf: &str, v: &ManageView) -> Markup {
    layout(
        "管理",
        chrome,
        html! {
            @if let Some(m) = &v.message { p.message role="status" { (m) } }
            @if let Some(e) = &v.error { p.error role="alert" { (e) } }
            section #enrol {
                h2 { "職員の登録" }
                @if v.authorization_active {
                    p.hint { "対象事業所：" (v.facilities) "。アクセスは今の災害認可が終わると終了します。" }
                    form method="post" action="/manage/staff" {
                        (csrf_field(csrf))
                        div.field { label for="name" { "氏名" } input type="text" id="name" name="name" required autocomplete="off"; }
                        div.field { label for="organisation" { "所属（団体・施設名）" } input type="text" id="organisation" name="organisation" autocomplete="off"; }
                        div.field { label for="facility" { "事業所番号（10桁）" } input type="text" id="facility" name="facility" inputmode="numeric" autocomplete="off"; }
                        fieldset {
                            legend { "役割" }
                            @for role in [Role::Support, Role::Receiving, Role::Coordinator] {
                                label.choice { input type="radio" name="role" value=(role.name()) required; (role_choice(role)) }
                            }
                        }
                        button type="submit" { "登録してコードを発行" }
                    }
                } @else {
                    p { "災害認可が有効なときだけ職員を登録できます。先に認可を取り込んでください。" }
                }
            }
            section #staff {
                h2 { "登録済みの職員" }
                @if v.staff.is_empty() { p { "まだいません。" } }
                ul.staff {
                    @for s in &v.staff {
                        li {
                            strong { (s.name) } " " span.mono { (s.id) } br;
                            (s.role.label()) @if !s.facility.is_empty() { "・事業所 " (s.facility) } "・" (s.enrolled_at) "・" (s.state)
                            @if s.active && s.revocable {
                                form.inline method="post" action={"/manage/staff/" (s.id) "/revoke"} {
                                    (csrf_field(csrf))
                                    button.danger type="submit" aria-label={(s.name) " の登録を取り消す"} { "取り消す" }
                                }
                            }
                        }
                    }
                }
            }
            section #authorization {
                h2 { "災害認可" }
                p { (v.authorization) }
                form method="post" action="/manage/authz/import" enctype="multipart/form-data" {
                    (csrf_field(csrf))
                    div.field { label for="file" { "認可ファイル（.kfauth）" } input type="file" id="file" name="file" accept=".kfauth,.txt"; }
                    div.field { label for="code" { "または認可コード（KFA1- で始まる文字列）を貼り付け" } textarea id="code" name="code" rows="3" {} }
                    button type="submit" { "認可を取り込む" }
                }
                @if v.authorization_active {
                    form method="post" action="/manage/authz/close" {
                        (csrf_field(csrf))
                        button.danger type="submit" { "認可を終了する（検索を止める）" }
                    }
                }
            }
            section #clock {
                h2 { "時計" }
                p { "ノードの時刻：" (v.now) "。電池切れなどで遅れているときだけ、進めてください（戻すことはできません。記録されます）。" }
                form method="post" action="/manage/clock" {
                    (csrf_field(csrf))
                    div.field { label for="to" { "新しい時刻（日本時間）" } input type="datetime-local" id="to" name="to" required; }
                    button type="submit" { "時計を進める" }
                }
            }
            section #audit-link {
                h2 { "監査ログ" }
                p { a href="/manage/audit" { "監査ログを見る" } }
                form method="get" action="/manage/audit" {
                    div.field { label for="person" { "一人の閲覧履歴（個人ID）" } input type="text" id="person" name="person" autocomplete="off"; }
                    button type="submit" { "履歴を見る" }
                }
            }
        },
    )
}

fn role_choice(role: Role) -> &'static str {
    match role {
        Role::Support => "支援者（避難所の支援職員）",
        Role::Receiving => "受入施設（受け入れる施設の職員）",
        Role::Coordinator => "調整役（コーディネーター）",
    }
}

pub struct EnrolledView {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub facility: String,
    pub code: String,
    pub token: String,
    pub login_url: String,
}

/// Shown once, right after enrolment: the code to hand over.
/// The question before the clock moves: from when to when, and how far.
pub struct ClockQuestion {
    pub now: String,
    pub to: String,
    /// "3日" and the like.
    pub step: String,
    /// The form value, sent again with the confirmation.
    pub value: String,
}

pub fn clock_confirm_page(chrome: &Chrome<'_>, csrf: &str, q: &ClockQuestion) -> Markup {
    layout(
        "時計を進めますか",
        chrome,
        html! {
            section {
                p { "ノードの時計を次のように進めます。戻すことはできません。" }
                dl {
                    dt { "今のノードの時刻" } dd { (q.now) }
                    dt { "進めた後の時刻" } dd { strong { (q.to) } }
                    dt { "進む時間" } dd { (q.step) }
                }
                p { "日付（特に年）が正しいか、もう一度確かめてください。先に進めすぎると、新しい災害認可が期限切れとして取り込めなくなります。" }
                form method="post" action="/manage/clock" {
                    (csrf_field(csrf))
                    input type="hidden" name="to" value=(q.value);
                    input type="hidden" name="confirm" value="yes";
                    button.danger type="submit" { "この時刻に進める" }
                }
                p { a.button href="/manage#clock" { "やめる" } }
            }
        },
    )
}

pub fn enrolled_page(chrome: &Chrome<'_>, v: &EnrolledView) -> Markup {
    layout(
        "登録しました",
        chrome,
        html! {
            section.slip {
                p { (v.name) "（" (v.role.label()) @if !v.facility.is_empty() { "・事業所 " (v.facility) } "）を登録しました。次をご本人に渡してください。この画面は一度しか表示されません。" }
                dl {
                    dt { "職員ID" } dd.big.mono #staff-id { (v.id) }
                    dt { "ワンタイムコード" } dd.big.mono #login-code { (v.code) }
                }
                (qr_image(&format!("{}?staff_id={}", v.login_url, v.id), "ログイン画面の URL と職員IDの QR コード"))
                p.hint { "QR コードはログイン画面を開きます（コードは入っていません）。初回ログインで、ご本人が PIN かパスフレーズを決めます。" }
                details {
                    summary { "施設のシステム用 API トークン" }
                    p.mono #api-token { (v.token) }
                }
                p { a.button href="/manage" { "管理に戻る" } }
            }
        },
    )
}

pub struct AuditLine {
    pub seq: u64,
    pub at: String,
    pub operator: String,
    pub facility: String,
    pub role: String,
    pub action: String,
    pub subjects: usize,
    pub purpose: String,
    pub outcome: String,
    pub detail: String,
}

pub fn audit_page(chrome: &Chrome<'_>, person: Option<&str>, lines: &[AuditLine], older: Option<u64>) -> Markup {
    let title = if person.is_some() { "一人の閲覧履歴" } else { "監査ログ" };
    layout(
        title,
        chrome,
        html! {
            @if let Some(p) = person { p { "個人ID " span.mono { (p) } " の記録への、このノードでのアクセスすべて（新しい順）。" } }
            @if lines.is_empty() { p { "記録はありません。" } }
            ol.audit {
                @for l in lines {
                    li {
                        p.head { span.mono { "#" (l.seq) } " " (l.at) " " strong { (l.action) } " " span class={"outcome outcome-" (l.outcome)} { (l.outcome) } }
                        p { (l.operator) @if !l.role.is_empty() { "（" (l.role) "）" } @if !l.facility.is_empty() { " 事業所 " (l.facility) } }
                        @if l.subjects > 0 || !l.purpose.is_empty() {
                            p { @if l.subjects > 0 { "対象 " (l.subjects) "人" } @if !l.purpose.is_empty() { " 目的：" (l.purpose) } }
                        }
                        p.detail { (l.detail) }
                    }
                }
            }
            @if let Some(before) = older {
                p { a href={"/manage/audit?before=" (before) @if let Some(p) = person { "&person=" (p) }} { "さらに古い記録" } }
            }
            p { a href="/manage" { "管理に戻る" } }
        },
    )
}
