//! The one error type of the runtime crate.

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The model file is malformed.
    #[error(transparent)]
    Format(#[from] sparetire_formats::FormatError),
    /// The model could not be built or run.
    #[error(transparent)]
    Model(#[from] sparetire_models::ModelError),
    /// The tokenizer or chat template failed.
    #[error(transparent)]
    Tokenizer(#[from] sparetire_tokenizer::TokenizerError),
    /// The prompt does not fit the context.
    #[error("the prompt has {n_prompt} tokens but the context holds {n_ctx}; use a larger -c or a shorter prompt")]
    PromptTooLong {
        /// Prompt tokens.
        n_prompt: usize,
        /// Context size.
        n_ctx: usize,
    },
    /// A request that cannot be served as asked.
    #[error("{0}")]
    Invalid(String),
}
