//! `roster seed --students N`: a fast bulk load of generated, deterministic students
//! (COPY on PostgreSQL, multi-row inserts on SQLite), in one transaction.

use std::time::Instant;

use clap::Args;
use diesel::prelude::*;

use crate::config::Settings;
use crate::db::{self, DbConnection};
use crate::models::job::now;
use crate::models::student::{self, NewStudent};
use crate::schema::students;

#[derive(Debug, Args)]
pub struct Opts {
    /// How many students to add.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub students: u64,
    /// The generator's seed: the same seed gives the same students.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Delete every student first.
    #[arg(long)]
    pub replace: bool,
}

const FIRST: &[&str] = &[
    "Ada",
    "Alan",
    "Grace",
    "Edsger",
    "Barbara",
    "Donald",
    "Margaret",
    "Ken",
    "Dennis",
    "Frances",
    "John",
    "Radia",
    "Leslie",
    "Shafi",
    "Tim",
    "Zoë",
    "José",
    "Łukasz",
    "Ngozi",
    "Aiko",
    "Søren",
    "Chloé",
    "Mateus",
    "Priya",
    "Hiroshi",
    "Amara",
    "Oluwaseun",
    "Émile",
    "Ines",
    "Yusuf",
    "Anaïs",
    "Björn",
    "Mei",
    "Rafael",
    "Siobhán",
    "Tomasz",
];
const LAST: &[&str] = &[
    "Lovelace",
    "Turing",
    "Hopper",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Hamilton",
    "Thompson",
    "Ritchie",
    "Allen",
    "McCarthy",
    "Perlman",
    "Lamport",
    "Goldwasser",
    "Berners-Lee",
    "Müller",
    "García",
    "Kowalski",
    "Okafor",
    "Tanaka",
    "Kierkegaard",
    "Dubois",
    "Silva",
    "Sharma",
    "Sato",
    "Mensah",
    "Adeyemi",
    "Zola",
    "O'Brien",
    "Smith, Jr.",
    "\"Ace\" Jones",
    "Nakamura",
    "Ørsted",
    "Rossi",
    "Ní Bhriain",
    "Nowak",
];

/// The `n`-th batch of generated students, from a generator seeded with `seed`.
pub fn generate(rng: &mut fastrand::Rng, count: usize) -> Vec<NewStudent> {
    let at = now();
    (0..count)
        .map(|_| NewStudent {
            name: format!(
                "{} {}",
                FIRST[rng.usize(..FIRST.len())],
                LAST[rng.usize(..LAST.len())]
            ),
            age: rng.i32(5..=90),
            created_at: at,
            updated_at: at,
        })
        .collect()
}

/// Adds `count` generated students in one transaction; returns how many were added.
pub fn seed(conn: &mut DbConnection, count: u64, seed: u64) -> anyhow::Result<u64> {
    let mut rng = fastrand::Rng::with_seed(seed);
    conn.transaction(|conn| {
        let mut left = count;
        while left > 0 {
            let n = left.min(100_000) as usize;
            student::insert_many(conn, &generate(&mut rng, n))?;
            left -= n as u64;
        }
        QueryResult::Ok(())
    })?;
    // Outside the transaction: VACUUM sets the visibility map, so that exports and counts
    // can be index-only scans straight away.
    let analyze = match conn {
        DbConnection::Pg(_) => "VACUUM ANALYZE students",
        DbConnection::Sqlite(_) => "ANALYZE students",
    };
    diesel::sql_query(analyze).execute(conn)?;
    Ok(count)
}

pub fn run(settings: Settings, opts: Opts) -> anyhow::Result<i32> {
    let pool = db::connect(&settings.database_url, 1)?;
    db::migrate(&pool)?;
    let mut conn = pool.get()?;
    if opts.replace {
        diesel::delete(students::table).execute(&mut *conn)?;
    }
    let started = Instant::now();
    let added = seed(&mut conn, opts.students, opts.seed)?;
    println!(
        "seeded {added} students into {} in {:.2} s",
        settings.database_url,
        started.elapsed().as_secs_f64()
    );
    Ok(0)
}
