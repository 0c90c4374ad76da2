//! `roster import FILE`: the file is checked as `POST /api/imports` checks an upload,
//! copied into the file store as the job's upload, and accepted as a `students_import`
//! job; with `--wait` it is followed to its end (exit status 1 unless it succeeded).

use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;

use clap::Args;
use sha2::{Digest, Sha256};

use crate::config::Settings;
use crate::domain::job::{FileFormat, JobId, JobKind};
use crate::jobs::accept::JobRequest;
use crate::jobs::store::FileStore;
use crate::kinds::import::{ImportMode, UploadCheck, UploadError};

#[derive(Debug, Args)]
pub struct Opts {
    /// The file: CSV with a header naming `name` and `age`, or JSON Lines.
    pub file: PathBuf,
    /// `all_or_nothing` (nothing is imported unless every row is valid) or `skip_invalid`.
    #[arg(long, default_value = "all_or_nothing", value_parser = |s: &str| s.parse::<ImportMode>())]
    pub mode: ImportMode,
    /// The file's format (default: from its extension: .jsonl/.ndjson are JSON Lines).
    #[arg(long, value_parser = |s: &str| s.parse::<FileFormat>())]
    pub format: Option<FileFormat>,
    /// Follow the job until it ends, with a progress bar.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub dispatch: super::queue::DispatchOpts,
}

pub fn run(settings: Settings, opts: Opts) -> anyhow::Result<i32> {
    let format =
        opts.format
            .unwrap_or_else(|| match opts.file.extension().and_then(|e| e.to_str()) {
                Some("jsonl" | "ndjson") => FileFormat::Jsonl,
                _ => FileFormat::Csv,
            });
    // The upload is written into the export directory: an unusable one stops here,
    // named, as it stops `serve` and `worker`.
    crate::startup::check_export_dir(&settings)?;
    let mut input = File::open(&opts.file)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", opts.file.display()))?;
    let id = JobId::new();
    let store = FileStore::new(settings.export_dir.clone(), settings.export_ttl());
    let mut upload = store.create_upload(id, format.extension())?;
    let mut out = upload.take_file().expect("a fresh upload is open");
    let mut check = UploadCheck::new(format, settings.max_import_bytes);
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1024 * 1024];
    let refused = |e: UploadError| match e {
        UploadError::TooLarge { limit } => {
            anyhow::anyhow!(
                "{} is larger than ROSTER_MAX_IMPORT_BYTES ({limit} bytes)",
                opts.file.display()
            )
        }
        UploadError::Invalid(why) => anyhow::anyhow!("{}: {why}", opts.file.display()),
    };
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let accepted = check.feed(&buf[..n]).map_err(refused)?;
        hasher.update(accepted);
        out.write_all(accepted)?;
    }
    let bytes = check.finish().map_err(refused)?;
    out.sync_all()?;
    let (name, path) = store.commit(upload)?;
    let params = serde_json::json!({
        "mode": opts.mode, "format": format, "upload": name, "bytes": bytes,
        "sha256": hex::encode(hasher.finalize()),
    });
    let serde_json::Value::Object(params) = params else {
        unreachable!("an object")
    };
    let request = JobRequest {
        id: Some(id),
        dispatch: opts.dispatch.dispatch(),
        ..JobRequest::new(JobKind::StudentsImport, params)
    };
    let (pool, accepted) = match super::submit(&settings, request) {
        Ok(submitted) => submitted,
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
    };
    let id = accepted.job().id;
    // The id alone on stdout, for scripts; the words on stderr.
    println!("{id}");
    eprintln!("{}", super::export::accepted_line("import", &accepted));
    if !opts.wait {
        eprintln!("{}", super::follow::how_to_come_back(id));
        return Ok(0);
    }
    super::follow::follow(&settings, &pool, id, None)
}
