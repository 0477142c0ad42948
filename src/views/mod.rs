//! Pages, as pure maud functions: a view model in, `Markup` out. Never a database row, never a
//! request; `views` does not touch the store. All text is Japanese, for the staff who use it.

use maud::{DOCTYPE, Markup, html};

mod manage;
mod person;

pub use manage::*;
pub use person::*;

use crate::authz::Role;

/// What surrounds every page: the drill banner and, once signed in, who is signed in.
pub struct Chrome<'a> {
    /// The node holds generated data (a drill or the demo): every page says so, so it is never
    /// mistaken for a real person's record.
    pub drill: bool,
    pub user: Option<&'a UserBar>,
}

/// The signed-in person, shown in the header with the sign-out button.
pub struct UserBar {
    pub name: String,
    pub role: Role,
    /// The session's CSRF token, for every form on the page.
    pub csrf: String,
}

pub fn layout(title: &str, chrome: &Chrome<'_>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="ja" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " – kaigo-field" }
                link rel="stylesheet" href="/static/style.css";
            }
            body {
                @if chrome.drill {
                    div.banner.drill role="note" { "訓練 ― 合成データです（実在の人物ではありません）" }
                }
                header {
                    p.site { a href="/" { "kaigo-field 災害時介護情報" } }
                    @if let Some(user) = chrome.user {
                        nav aria-label="メニュー" {
                            a href="/search" { "検索" }
                            @if user.role == Role::Coordinator { a href="/manage" { "管理" } }
                            a href="/" { "状態" }
                            form method="post" action="/logout" {
                                (csrf_field(&user.csrf))
                                button.link type="submit" { "ログアウト" }
                            }
                        }
                        p.user { (user.name) "（" (user.role.label()) "）" }
                    } @else {
                        nav aria-label="メニュー" { a href="/login" { "ログイン" } a href="/" { "状態" } }
                    }
                }
                main { h1 { (title) } (body) }
                footer { "このノードは災害時に限り、認可された期間・地域・事業所にだけ介護情報を提供します。すべてのアクセスは記録されます。" }
            }
        }
    }
}

/// The hidden CSRF field every form carries.
pub fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

/// A QR code as an image (SVG in a data URI, allowed by the page's CSP), with its text as alt.
pub fn qr_image(text: &str, alt: &str) -> Markup {
    use base64::Engine;
    match crate::authz::qr_svg(text) {
        Ok(svg) => {
            let uri = format!("data:image/svg+xml;base64,{}", base64::engine::general_purpose::STANDARD.encode(svg));
            html! { img.qr src=(uri) alt=(alt) width="240" height="240"; }
        }
        Err(_) => html! { p { "（QRコードにできない長さです）" } },
    }
}

pub struct SnapshotView {
    pub version: u64,
    pub created_at: String,
    pub imported_at: String,
    /// How old the snapshot is, in words.
    pub age: String,
    pub record_count: u64,
    pub municipalities: String,
    pub synthetic: bool,
    pub snapshot_id: String,
}

pub enum AuthorizationView {
    Active {
        disaster: String,
        from: String,
        until: String,
        /// Time left in the window, in words.
        left: String,
        municipalities: String,
        drill: bool,
        records_open: usize,
        nodes: usize,
    },
    Inactive {
        clock_behind: bool,
        message: String,
    },
}

pub struct StatusView {
    pub node_id: String,
    pub region: String,
    pub snapshot: Option<SnapshotView>,
    pub authorization: AuthorizationView,
    pub fingerprint: String,
    pub url: String,
    pub now: String,
    /// Link to the central: there is none yet in this version.
    pub link: String,
    pub unsent_audit: u64,
}

/// "3日と4時間", "25分": a duration for people.
pub fn duration_words(d: chrono::Duration) -> String {
    let minutes = d.num_minutes().max(0);
    let (days, hours, mins) = (minutes / (24 * 60), minutes / 60 % 24, minutes % 60);
    match (days, hours) {
        (0, 0) => format!("{mins}分"),
        (0, _) => format!("{hours}時間{mins}分"),
        _ => format!("{days}日と{hours}時間"),
    }
}

pub fn status(v: &StatusView, chrome: &Chrome<'_>) -> Markup {
    let authorization = match &v.authorization {
        AuthorizationView::Active { disaster, from, until, left, municipalities, drill, records_open, nodes } => {
            html! {
                p.state-ok { "有効：検索できます" @if *drill { "（訓練）" } }
                dl {
                    dt { "災害" } dd { (disaster) }
                    dt { "対象市区町村" } dd { (municipalities) }
                    dt { "期間" } dd { (from) " 〜 " (until) }
                    dt { "残り" } dd { (left) }
                    dt { "開いている記録" } dd { (records_open) "人" }
                    dt { "対象ノード数" } dd { (nodes) }
                }
            }
        }
        AuthorizationView::Inactive { clock_behind, message } => html! {
            @if *clock_behind {
                p.state-bad { "時計が遅れているため停止中" }
            } @else {
                p.state-bad { "無効：検索はできません" }
            }
            p { (message) }
            p { "災害認可が有効な間だけ、スナップショットの個人データを開きます。それ以外のときは暗号化されたままで、このノード自身も読めません。" }
        },
    };
    layout(
        "ノードの状態",
        chrome,
        html! {
            section {
                h2 { "災害認可" }
                (authorization)
            }
            section {
                h2 { "接続先の確認" }
                dl {
                    dt { "URL" } dd.mono { (v.url) }
                    dt { "証明書 SHA-256" } dd.mono { (v.fingerprint) }
                }
                p { "ブラウザーに表示される証明書の指紋と上の値が一致するかを確かめてください。QRコードには URL と指紋が入っています。" }
                (qr_image(&format!("{}#sha256={}", v.url, v.fingerprint), "このノードの URL と証明書の指紋の QR コード"))
            }
            section {
                h2 { "スナップショット" }
                @match &v.snapshot {
                    Some(s) => dl {
                        dt { "版" } dd { (s.version) }
                        dt { "対象市区町村" } dd { (s.municipalities) }
                        dt { "人数" } dd { (s.record_count) "人" }
                        dt { "作成日時" } dd { (s.created_at) "（" (s.age) "）" }
                        dt { "取り込み日時" } dd { (s.imported_at) }
                        dt { "データの種類" } dd { @if s.synthetic { "合成データ（訓練・デモ用）" } @else { "実データ" } }
                        dt { "ID" } dd.mono { (s.snapshot_id) }
                    },
                    None => p.state-bad { "スナップショットがありません。`kaigo-field snapshot import` で取り込んでください。" },
                }
            }
            section {
                h2 { "このノード" }
                dl {
                    dt { "ノードID" } dd.mono { (v.node_id) }
                    dt { "担当地域" } dd { (v.region) }
                    dt { "ノードの時刻" } dd { (v.now) }
                    dt { "中央との接続" } dd { (v.link) }
                    dt { "中央へ未送信" } dd { "監査記録 " (v.unsent_audit) "件" }
                }
            }
        },
    )
}

/// A page for an error: what happened and what to do, never internal detail.
pub fn error_page(title: &str, message: &str, chrome: &Chrome<'_>) -> Markup {
    layout(
        title,
        chrome,
        html! {
            section.error {
                p { (message) }
                p { a href="/" { "状態ページへ" } " ・ " a href="/search" { "検索へ" } }
            }
        },
    )
}
