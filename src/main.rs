//! `chronicle`: the command-line face of the ledger.
//!
//! Exit codes: 0 success; 1 the ledger failed verification; 2 bad usage or bad input;
//! 3 the data directory or another resource could not be used.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

/// Chronicle: an event-sourced criminal-records ledger with audit guarantees.
#[derive(Parser)]
#[command(name = "chronicle", version, about, long_about = None)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Init(cli::init::InitArgs),
    Verify(cli::verify::VerifyArgs),
    Demo(cli::demo::DemoArgs),
    LogKey(cli::log_key::LogKeyArgs),
    Checkpoint(cli::checkpoint::CheckpointArgs),
    Proof(cli::proof::ProofArgs),
    ExportEvidence(cli::evidence::ExportArgs),
    VerifyEvidence(cli::evidence::VerifyArgs),
    Witness(cli::witness::WitnessArgs),
    Rebuild(cli::rebuild::RebuildArgs),
    Import(cli::import::ImportArgs),
    Keygen(cli::keygen::KeygenArgs),
    Principal(cli::principal::PrincipalArgs),
    Generate(cli::generate::GenerateArgs),
    Serve(cli::serve::ServeArgs),
    Enroll(cli::clerk::EnrollArgs),
    Arrest(cli::clerk::ArrestArgs),
    CourtCase(cli::clerk::CourtCaseArgs),
    Charge(cli::clerk::ChargeArgs),
    Disposition(cli::clerk::DispositionArgs),
    Correct(cli::clerk::CorrectArgs),
    Order(cli::clerk::OrderArgs),
    Reattribute(cli::clerk::ReattributeArgs),
    Record(cli::query::RecordArgs),
    Case(cli::query::CaseArgs),
    History(cli::query::HistoryArgs),
    Check(cli::query::CheckArgs),
    Recipients(cli::audit::RecipientsArgs),
    Reproduce(cli::audit::ReproduceArgs),
    #[command(hide = true)]
    AppendLoop(cli::append_loop::AppendLoopArgs),
    #[command(hide = true)]
    ExpungeLoop(cli::expunge_loop::ExpungeLoopArgs),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Cmd::Init(a) => cli::init::run(a),
        Cmd::Verify(a) => cli::verify::run(a),
        Cmd::Demo(a) => cli::demo::run(a),
        Cmd::LogKey(a) => cli::log_key::run(a),
        Cmd::Checkpoint(a) => cli::checkpoint::run(a),
        Cmd::Proof(a) => cli::proof::run(a),
        Cmd::ExportEvidence(a) => cli::evidence::export(a),
        Cmd::VerifyEvidence(a) => cli::evidence::verify(a),
        Cmd::Witness(a) => cli::witness::run(a),
        Cmd::Rebuild(a) => cli::rebuild::run(a),
        Cmd::Import(a) => cli::import::run(a),
        Cmd::Keygen(a) => cli::keygen::run(a),
        Cmd::Principal(a) => cli::principal::run(a),
        Cmd::Generate(a) => cli::generate::run(a),
        Cmd::Serve(a) => cli::serve::run(a),
        Cmd::Enroll(a) => cli::clerk::enroll(a),
        Cmd::Arrest(a) => cli::clerk::arrest(a),
        Cmd::CourtCase(a) => cli::clerk::court_case(a),
        Cmd::Charge(a) => cli::clerk::charge(a),
        Cmd::Disposition(a) => cli::clerk::disposition(a),
        Cmd::Correct(a) => cli::clerk::correct(a),
        Cmd::Order(a) => cli::clerk::order(a),
        Cmd::Reattribute(a) => cli::clerk::reattribute(a),
        Cmd::Record(a) => cli::query::record(a),
        Cmd::Case(a) => cli::query::case(a),
        Cmd::History(a) => cli::query::history(a),
        Cmd::Check(a) => cli::query::check(a),
        Cmd::Recipients(a) => cli::audit::recipients(a),
        Cmd::Reproduce(a) => cli::audit::reproduce(a),
        Cmd::AppendLoop(a) => cli::append_loop::run(a),
        Cmd::ExpungeLoop(a) => cli::expunge_loop::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(cli::EXIT_UNUSABLE)
        }
    }
}
