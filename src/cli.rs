//! The command line: parsing, dispatch and what each command prints. `anyhow` lives here and in
//! `main` only; the library below returns typed errors.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::central::{self, CentralDir, CentralError, SnapshotOptions};
use crate::clock::{self, SharedClock};
use crate::http::{self, AppState};
use crate::model::MunicipalityCode;
use crate::node::{self, Node, NodeDir, describe_region};
use crate::person_csv::{self, CsvEncoding, ReadReport};
use crate::progress::Progress;
use crate::region::{self, Region};
use crate::snapshot::Manifest;
use crate::synth::{self, queries::QueryMaker};
use crate::{server, tls};

#[derive(Debug, Parser)]
#[command(
    name = "kaigo-field",
    version,
    about = "災害時に避難所で介護情報を引き継ぐためのノード（介護情報基盤のオフライン版）"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// デモ: 中央とノードを作り、合成地域のスナップショットを取り込み、HTTPSで状態ページを出す
    Demo(DemoArgs),
    /// ノードを HTTPS で動かす
    Serve(ServeArgs),
    /// 中央（基盤）側の操作
    #[command(subcommand)]
    Central(CentralCommand),
    /// ノードの設定
    #[command(subcommand)]
    Node(NodeCommand),
    /// スナップショットの検証と取り込み（ノード側）
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// デモの置き場所（既定: 一時ディレクトリの kaigo-field-demo）
    #[arg(long)]
    pub dir: Option<PathBuf>,
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// 合成する人数
    #[arg(long, default_value_t = 5000)]
    pub persons: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// 合成する市区町村（6桁コード、カンマ区切り）
    #[arg(long, default_value = "172049,172057,174611,174637")]
    pub municipalities: String,
    /// 既存のデモを消して作り直す
    #[arg(long)]
    pub fresh: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
}

#[derive(Debug, Subcommand)]
pub enum CentralCommand {
    /// 中央の署名鍵とノード証明書用の認証局を作る
    Init {
        #[arg(long)]
        dir: PathBuf,
    },
    /// 合成の人口（人物CSV）と、正解つきの検索問い合わせを作る
    Synth(SynthArgs),
    /// 人物CSVを検証し、署名・暗号化した地域スナップショットを作る
    Snapshot(SnapshotArgs),
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// 6桁の市区町村コード（カンマ区切り）
    #[arg(long)]
    pub municipalities: String,
    #[arg(long)]
    pub persons: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long)]
    pub out: PathBuf,
    /// 正解つきの問い合わせ（JSON Lines）の出力先
    #[arg(long)]
    pub queries: Option<PathBuf>,
    #[arg(long, default_value_t = 1000)]
    pub query_count: u64,
    /// 年齢や認定期間の基準日（既定 2026-10-01。日付を変えない限り出力は同じ）
    #[arg(long)]
    pub as_of: Option<NaiveDate>,
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long)]
    pub input: PathBuf,
    #[arg(long)]
    pub out: PathBuf,
    /// auto（既定）, utf-8, shift_jis
    #[arg(long, default_value = "auto")]
    pub encoding: String,
    /// 誤りのある行を除いて作る（件数を報告）
    #[arg(long)]
    pub skip_invalid: bool,
    /// 合成データ（訓練・デモ用）として印を付ける。実データには付けないこと
    #[arg(long)]
    pub synthetic: bool,
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// ノードのディレクトリを作り、中央の公開鍵と担当地域を設定する
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// 中央の公開鍵ファイル（central.pub）
        #[arg(long)]
        central_key: PathBuf,
        /// 担当地域: 市区町村コード（6桁）か都道府県コード（2桁）のカンマ区切り
        #[arg(long)]
        region: String,
        /// ノードID（既定: ランダム）
        #[arg(long)]
        node_id: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// スナップショットを検証する（署名・改ざん・地域・版）。データ鍵は要らない
    Verify {
        #[arg(long)]
        dir: PathBuf,
        file: PathBuf,
        #[arg(long)]
        quiet: bool,
    },
    /// スナップショットを検証して取り込む（途中で止まっても前の版が使われ続ける）
    Import {
        #[arg(long)]
        dir: PathBuf,
        file: PathBuf,
        #[arg(long)]
        quiet: bool,
    },
}

pub fn run(cli: Cli) -> Result<()> {
    let clock = clock::system();
    match cli.command {
        Command::Demo(args) => demo(args, clock),
        Command::Serve(args) => serve(&NodeDir::new(args.dir), args.listen, clock, None),
        Command::Central(CentralCommand::Init { dir }) => {
            let key = central::init(&CentralDir::new(&dir))?;
            println!("中央を作りました: {}", dir.display());
            println!(
                "公開鍵: {}（鍵ID {}）ノードにはこのファイルを渡します",
                dir.join("central.pub").display(),
                key.key_id()
            );
            Ok(())
        }
        Command::Central(CentralCommand::Synth(args)) => synth_command(&args),
        Command::Central(CentralCommand::Snapshot(args)) => snapshot_command(&args, &clock),
        Command::Node(NodeCommand::Init {
            dir,
            central_key,
            region,
            node_id,
        }) => {
            let region = Region::parse(&region)?;
            let node_id = node_id.unwrap_or_else(random_node_id);
            let info = node::init(&NodeDir::new(&dir), &central_key, &node_id, &region)?;
            println!("ノードを作りました: {}", dir.display());
            println!(
                "ノードID: {}  担当地域: {}  中央の鍵ID: {}",
                info.node_id,
                describe_region(&info.region),
                info.central_key.key_id()
            );
            Ok(())
        }
        Command::Snapshot(SnapshotCommand::Verify { dir, file, quiet }) => {
            let node = Node::open(&NodeDir::new(dir))?;
            let m = node.verify(&file, quiet)?;
            println!("検証に成功しました。このノードに取り込めます。");
            print_manifest(&m);
            Ok(())
        }
        Command::Snapshot(SnapshotCommand::Import { dir, file, quiet }) => {
            let mut node = Node::open(&NodeDir::new(dir))?;
            let m = node.import(&file, clock.as_ref(), quiet)?;
            println!("取り込みました。");
            print_manifest(&m);
            Ok(())
        }
    }
}

fn random_node_id() -> String {
    use rand::Rng;
    format!("node-{:08x}", rand::rngs::OsRng.r#gen::<u32>())
}

fn print_manifest(m: &Manifest) {
    println!(
        "  版: {}  人数: {}  市区町村: {}",
        m.snapshot_version,
        m.record_count,
        region::names(&m.municipalities)
    );
    println!(
        "  作成: {}  合成データ: {}  ID: {}",
        http::jst(m.created_at),
        if m.synthetic { "はい" } else { "いいえ" },
        m.snapshot_id
    );
}

fn parse_municipalities(s: &str) -> Result<Vec<MunicipalityCode>> {
    let codes = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(MunicipalityCode::parse)
        .collect::<Result<Vec<_>, _>>()?;
    if codes.is_empty() {
        bail!(
            "--municipalities に6桁の市区町村コードを1つ以上指定してください（例: 172049,172057）"
        );
    }
    Ok(codes)
}

pub fn synth_command(args: &SynthArgs) -> Result<()> {
    let codes = parse_municipalities(&args.municipalities)?;
    if args.persons > crate::limits::SYNTH_PERSONS_MAX {
        bail!(
            "--persons は {} 人までです",
            crate::limits::SYNTH_PERSONS_MAX
        );
    }
    let params = synth::Params {
        municipalities: codes,
        persons: args.persons,
        seed: args.seed,
        as_of: args.as_of.unwrap_or_else(synth::default_as_of),
    };
    let mut generator = synth::Generator::new(params.clone())?;
    let out =
        File::create(&args.out).with_context(|| format!("{} を作れません", args.out.display()))?;
    let mut writer = person_csv::Writer::new(BufWriter::with_capacity(1 << 20, out))?;
    let mut queries = args
        .queries
        .as_ref()
        .map(|_| QueryMaker::new(args.seed, args.persons, args.query_count));
    let mut progress = Progress::new("合成", args.persons, args.quiet);
    for i in 0..args.persons {
        let p = generator.person();
        if let Some(q) = queries.as_mut() {
            q.observe(i, &p);
        }
        writer.write(&p)?;
        progress.add(1);
    }
    writer.finish()?.flush()?;
    progress.finish();
    if let (Some(path), Some(maker)) = (&args.queries, queries) {
        let mut absent = synth::Generator::new(synth::Params {
            seed: params.seed ^ 0xAB5E_0000_0000_0001,
            ..params
        })?;
        let list = maker.finish(|| absent.person());
        let mut w = BufWriter::new(
            File::create(path).with_context(|| format!("{} を作れません", path.display()))?,
        );
        for q in &list {
            serde_json::to_writer(&mut w, q)?;
            w.write_all(b"\n")?;
        }
        w.flush()?;
        eprintln!(
            "問い合わせ {} 件を {} に書きました",
            list.len(),
            path.display()
        );
    }
    eprintln!("{} 人を {} に書きました", args.persons, args.out.display());
    Ok(())
}

fn print_report(r: &ReadReport) {
    if let Some(e) = r.encoding {
        eprintln!("文字コード: {e}");
    }
    for p in &r.errors {
        eprintln!("誤り: {p}");
    }
    if r.rows_with_errors as usize > r.errors.len() {
        eprintln!(
            "（ほかにも誤りがあります。表示は先頭 {} 件まで）",
            r.errors.len()
        );
    }
    for w in &r.warnings {
        eprintln!("注意: {w}");
    }
    if r.warning_count as usize > r.warnings.len() {
        eprintln!(
            "（注意はほかに {} 件）",
            r.warning_count as usize - r.warnings.len()
        );
    }
    eprintln!(
        "行数 {}、有効 {}、誤りのある行 {}、注意 {}",
        r.rows, r.valid, r.rows_with_errors, r.warning_count
    );
}

pub fn snapshot_command(args: &SnapshotArgs, clock: &SharedClock) -> Result<()> {
    let encoding = match args.encoding.as_str() {
        "auto" => None,
        other => Some(CsvEncoding::parse(other).with_context(|| {
            format!("--encoding {other} は使えません: auto, utf-8, shift_jis のいずれか")
        })?),
    };
    let options = SnapshotOptions {
        encoding,
        skip_invalid: args.skip_invalid,
        synthetic: args.synthetic,
        quiet: args.quiet,
    };
    match central::build_snapshot(
        &CentralDir::new(&args.dir),
        &args.input,
        &args.out,
        &options,
        clock.as_ref(),
    ) {
        Ok(outcome) => {
            print_report(&outcome.report);
            if outcome.report.rows_with_errors > 0 {
                eprintln!(
                    "--skip-invalid: 誤りのある {} 行を除きました",
                    outcome.report.rows_with_errors
                );
            }
            println!("スナップショットを作りました: {}", args.out.display());
            print_manifest(&outcome.manifest);
            Ok(())
        }
        Err(CentralError::InvalidRows { rows, report }) => {
            print_report(&report);
            Err(CentralError::InvalidRows { rows, report }.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// Extra lines printed once the server is listening (the demo's logins), given the URL and
/// the certificate fingerprint.
type Banner = dyn Fn(&str, &str);

/// Serves a node until SIGINT or SIGTERM. `ready` hears the bound address (for the demo's
/// banner and for tests that listen on port 0).
fn serve(
    dir: &NodeDir,
    listen: SocketAddr,
    clock: SharedClock,
    banner: Option<&Banner>,
) -> Result<()> {
    let node = Node::open(dir)?;
    let identity = tls::ensure_server_identity(&dir.tls(), &node.info.node_id)?;
    let fingerprint = identity.fingerprint.clone();
    let config = tls::server_config(identity)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio を起動できません")?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("{listen} で待ち受けできません（使用中ではありませんか）"))?;
        let addr = listener.local_addr()?;
        let url = format!("https://{addr}/");
        println!("URL: {url}");
        println!("証明書 SHA-256: {fingerprint}");
        if let Some(b) = banner {
            b(&url, &fingerprint);
        }
        println!("停止するには Ctrl-C を押してください。");
        // Tests read these lines from a pipe; push them out now.
        std::io::stdout().flush()?;
        let state = AppState {
            node: Arc::new(Mutex::new(node)),
            clock,
            fingerprint,
        };
        let shutdown = CancellationToken::new();
        tokio::spawn(server::cancel_on_signal(shutdown.clone()));
        server::run(listener, config, http::router(state), shutdown).await?;
        println!("停止しました。");
        Ok(())
    })
}

fn demo(args: DemoArgs, clock: SharedClock) -> Result<()> {
    let root = args
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("kaigo-field-demo"));
    let node_dir = NodeDir::new(root.join("node"));
    if args.fresh && root.exists() {
        fs::remove_dir_all(&root).with_context(|| format!("{} を消せません", root.display()))?;
    }
    if node_dir.db().exists() {
        println!(
            "既存のデモを使います: {}（作り直すには --fresh）",
            root.display()
        );
    } else {
        demo_setup(&root, &node_dir, &args, &clock)?;
    }
    let persons = args.persons;
    serve(
        &node_dir,
        args.listen,
        clock,
        Some(&move |_url: &str, _fp: &str| {
            println!("デモ: 合成地域 {persons} 人のスナップショットを取り込み済みです。");
            println!(
                "ログイン: まだありません（この版は状態ページのみ。職員の登録と検索は今後の版で追加されます）"
            );
        }),
    )
}

fn demo_setup(root: &Path, node_dir: &NodeDir, args: &DemoArgs, clock: &SharedClock) -> Result<()> {
    println!("デモを作ります: {}", root.display());
    fs::create_dir_all(root)?;
    let central_dir = CentralDir::new(root.join("central"));
    central::init(&central_dir)?;
    let csv = root.join("persons.csv");
    synth_command(&SynthArgs {
        municipalities: args.municipalities.clone(),
        persons: args.persons,
        seed: args.seed,
        out: csv.clone(),
        queries: Some(root.join("queries.jsonl")),
        query_count: 200,
        as_of: None,
        quiet: false,
    })?;
    let snap = root.join("region.kfsnap");
    snapshot_command(
        &SnapshotArgs {
            dir: central_dir.root.clone(),
            input: csv,
            out: snap.clone(),
            encoding: "auto".into(),
            skip_invalid: false,
            synthetic: true,
            quiet: false,
        },
        clock,
    )?;
    let region = Region::parse(&args.municipalities)?;
    node::init(node_dir, &central_dir.public_key(), "demo-node", &region)?;
    let mut node = Node::open(node_dir)?;
    node.import(&snap, clock.as_ref(), false)?;
    Ok(())
}
