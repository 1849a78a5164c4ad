//! Rendering conversations with a model's Jinja chat template (`tokenizer.chat_template`).
//!
//! Templates are written for Hugging Face's Jinja2 environment, so [`ChatTemplate`] sets it up
//! the same way: `trim_blocks` and `lstrip_blocks` on, Python string/dict methods
//! (`.strip()`, `.items()`, … via minijinja-contrib's pycompat), and `raise_exception(msg)`.

use minijinja::{context, Environment, Error, ErrorKind};
use serde::Serialize;

use crate::TokenizerError;

/// One turn of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant` (templates may accept others).
    pub role: String,
    /// The turn's text.
    pub content: String,
}

impl ChatMessage {
    /// A message with the given role and content.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// ChatML, the fallback for models whose GGUF carries no template (as llama.cpp falls back).
const CHATML: &str = "{%- for message in messages -%}\
{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}\
{%- endfor -%}\
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}";

/// Gemma's turn format (`<start_of_turn>user … <end_of_turn>`, the assistant called `model`,
/// a system message folded into the first user turn), for Gemma files that carry no template.
const GEMMA: &str = "{{- bos_token -}}\
{%- if messages and messages[0]['role'] == 'system' -%}\
{%- set prefix = messages[0]['content'] + '\n\n' -%}{%- set turns = messages[1:] -%}\
{%- else -%}{%- set prefix = '' -%}{%- set turns = messages -%}{%- endif -%}\
{%- for m in turns -%}\
{%- set role = 'model' if m['role'] == 'assistant' else m['role'] -%}\
{{- '<start_of_turn>' + role + '\n' + (prefix if loop.first else '') + m['content'] | trim + '<end_of_turn>\n' -}}\
{%- endfor -%}\
{%- if add_generation_prompt -%}{{- '<start_of_turn>model\n' -}}{%- endif -%}";

/// Most template instructions one render may execute: a template is code a model file
/// supplies, and this bounds a hostile one (the SmolLM2 template needs a few hundred).
const FUEL: u64 = 2_000_000;

const NAME: &str = "chat";

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles a Jinja template source.
    pub fn new(source: &str) -> Result<Self, TokenizerError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_fuel(Some(FUEL));
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        minijinja_contrib::add_to_environment(&mut env);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<String, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_template_owned(NAME, source.to_string())
            .map_err(template_error)?;
        Ok(ChatTemplate { env })
    }

    /// The ChatML template (`<|im_start|>role\ncontent<|im_end|>\n`), used when a model has none.
    pub fn chatml() -> Self {
        match Self::new(CHATML) {
            Ok(t) => t,
            // The constant is valid Jinja (a unit test renders it); an empty environment is
            // only a fallback for the impossible.
            Err(_) => ChatTemplate {
                env: Environment::new(),
            },
        }
    }

    /// The built-in template for a model architecture whose file has none: Gemma's turn
    /// format for `gemma*`, ChatML (what Qwen and SmolLM use) for everything else.
    pub fn builtin(arch: &str) -> Self {
        if arch.starts_with("gemma") {
            if let Ok(t) = Self::new(GEMMA) {
                return t;
            }
        }
        Self::chatml()
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends where the assistant's
    /// reply begins. `bos_token`/`eos_token` are the texts templates may insert.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<String, TokenizerError> {
        let template = self.env.get_template(NAME).map_err(template_error)?;
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => bos_token,
                eos_token => eos_token,
            })
            .map_err(template_error)
    }
}

fn template_error(e: Error) -> TokenizerError {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    TokenizerError::Template(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conversation() -> Vec<ChatMessage> {
        vec![
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "Hi!"),
            ChatMessage::new("assistant", "Hello."),
            ChatMessage::new("user", "Bye?"),
        ]
    }

    #[test]
    fn gemma_builtin() {
        let out = ChatTemplate::builtin("gemma3")
            .render(&conversation(), true, "<bos>", "<eos>")
            .expect("render");
        assert_eq!(
            out,
            "<bos><start_of_turn>user\nBe brief.\n\nHi!<end_of_turn>\n\
             <start_of_turn>model\nHello.<end_of_turn>\n<start_of_turn>user\nBye?<end_of_turn>\n\
             <start_of_turn>model\n"
        );
    }

    #[test]
    fn runaway_templates_stop() {
        let t = ChatTemplate::new(
            "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}",
        )
        .expect("compiles");
        let err = t.render(&conversation(), true, "", "").unwrap_err();
        assert!(err.to_string().contains("fuel"), "{err}");
    }

    #[test]
    fn chatml_fallback() {
        let out = ChatTemplate::chatml()
            .render(&conversation(), true, "", "")
            .expect("render");
        assert_eq!(
            out,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n\
             <|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye?<|im_end|>\n\
             <|im_start|>assistant\n"
        );
        let out = ChatTemplate::chatml()
            .render(&conversation()[1..2], false, "", "")
            .expect("render");
        assert_eq!(out, "<|im_start|>user\nHi!<|im_end|>\n");
    }

    /// Gemma 3's template (Hugging Face), text-only parts.
    const GEMMA: &str = r#"{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- set first_user_prefix = messages[0]['content'] + '

' -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '
' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- endif -%}
    {{ '<end_of_turn>
' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model
'}}
{%- endif -%}
"#;

    #[test]
    fn gemma_style() {
        let t = ChatTemplate::new(GEMMA).expect("compile");
        let out = t
            .render(&conversation(), true, "<bos>", "<eos>")
            .expect("render");
        assert_eq!(
            out,
            "<bos><start_of_turn>user\nBe brief.\n\nHi!<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n\
             <start_of_turn>user\nBye?<end_of_turn>\n<start_of_turn>model\n"
        );
    }

    #[test]
    fn raise_exception_is_an_error() {
        let t = ChatTemplate::new(GEMMA).expect("compile");
        let bad = [ChatMessage::new("assistant", "first")];
        let err = t
            .render(&bad, true, "", "")
            .expect_err("roles must alternate");
        assert!(err.to_string().contains("alternate"), "{err}");
    }

    #[test]
    fn python_methods_and_syntax_errors() {
        let t = ChatTemplate::new("{{ messages[0]['content'].strip().upper() }}").expect("compile");
        let out = t
            .render(&[ChatMessage::new("user", "  hi ")], false, "", "")
            .expect("render");
        assert_eq!(out, "HI");
        assert!(ChatTemplate::new("{% for %}").is_err());
    }
}
