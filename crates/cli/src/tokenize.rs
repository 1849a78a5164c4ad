//! `sparetire tokenize`: text to token ids, as the model's tokenizer splits it.

use anyhow::{Context, Result};
use clap::Args;
use sparetire_formats::gguf::GgufFile;
use sparetire_tokenizer::Tokenizer;

use crate::store;

/// `tokenize` flags.
#[derive(Args, Debug)]
pub struct TokenizeArgs {
    /// The text to tokenize
    pub text: String,
    /// Model: a GGUF file or a store name (default: smollm2)
    #[arg(short = 'm', long = "model", value_name = "FILE|NAME")]
    pub model: Option<String>,
    /// Print {"tokens": [...]} instead of one id per line with its piece
    #[arg(long)]
    pub json: bool,
    /// Do not add BOS/EOS even if the model's metadata asks for them
    #[arg(long)]
    pub no_bos: bool,
    /// Treat special-token text (e.g. <|im_start|>) as plain text
    #[arg(long)]
    pub no_parse_special: bool,
}

/// Runs `sparetire tokenize`.
pub fn main(a: TokenizeArgs) -> Result<()> {
    let path = store::resolve(a.model.as_deref())?;
    let file = GgufFile::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let tok = Tokenizer::from_gguf(&file)
        .with_context(|| format!("reading the tokenizer of {}", path.display()))?;
    let ids = tok.encode(&a.text, !a.no_bos, !a.no_parse_special)?;
    if a.json {
        println!("{}", serde_json::json!({ "tokens": ids }));
    } else {
        for id in ids {
            let piece = String::from_utf8_lossy(&tok.token_to_piece_special(id, true)).into_owned();
            println!("{id:6} -> {piece:?}");
        }
    }
    Ok(())
}
