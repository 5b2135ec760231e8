//! Text in and out of a generation: where the tokenizer is, reading it, and decoding
//! tokens as they come, a character that spans several tokens handed out once complete.

use std::path::{Path, PathBuf};

use tokenizers::Tokenizer;

use super::GenerateError;

/// Where the tokenizer is: `explicit` (a file, or a folder holding tokenizer.json), else
/// tokenizer.json in the checkpoint's folder (or in `checkpoint`, a folder), else none.
///
/// # Errors
/// `explicit` names no file.
pub fn tokenizer_path(
    explicit: Option<&Path>,
    checkpoint: &Path,
) -> Result<Option<PathBuf>, GenerateError> {
    if let Some(t) = explicit {
        let file = if t.is_dir() {
            t.join("tokenizer.json")
        } else {
            t.to_path_buf()
        };
        if !file.is_file() {
            return Err(GenerateError::NoTokenizerFile(file));
        }
        return Ok(Some(file));
    }
    let folder = if checkpoint.is_dir() {
        Some(checkpoint)
    } else {
        checkpoint.parent()
    };
    Ok(folder
        .map(|f| {
            if f.as_os_str().is_empty() {
                Path::new(".").join("tokenizer.json")
            } else {
                f.join("tokenizer.json")
            }
        })
        .filter(|p| p.is_file()))
}

/// Reads a Hugging Face `tokenizer.json`.
///
/// # Errors
/// The file is not one (the reader's first line of explanation).
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer, GenerateError> {
    Tokenizer::from_file(path).map_err(|e| GenerateError::TokenizerRead {
        path: path.to_path_buf(),
        reason: e.to_string().lines().next().unwrap_or("").to_string(),
    })
}

/// A tokenizer's decode stream (which holds back a token that ends inside a UTF-8
/// character until the character is complete).
type Stream<'t> = tokenizers::DecodeStream<
    't,
    tokenizers::ModelWrapper,
    tokenizers::NormalizerWrapper,
    tokenizers::PreTokenizerWrapper,
    tokenizers::PostProcessorWrapper,
    tokenizers::DecoderWrapper,
>;

/// Tokens to text as they come: [`TextStream::push`] gives the text that a token
/// completes, [`TextStream::finish`] what is still held back and the whole text.
pub struct TextStream<'t> {
    tokenizer: &'t Tokenizer,
    /// `None`: the stream failed (a decoder whose output is not prefix-stable); the text
    /// comes out at the end.
    stream: Option<Stream<'t>>,
    ids: Vec<u32>,
    handed_out: String,
}

impl<'t> TextStream<'t> {
    /// A stream over `tokenizer`.
    pub fn new(tokenizer: &'t Tokenizer) -> Self {
        Self {
            tokenizer,
            stream: Some(tokenizer.decode_stream(false)),
            ids: Vec::new(),
            handed_out: String::new(),
        }
    }

    /// One token: the text it completes, if any.
    pub fn push(&mut self, id: i64) -> Option<String> {
        let id = id as u32;
        self.ids.push(id);
        match self.stream.as_mut()?.step(id) {
            Ok(Some(chunk)) => {
                self.handed_out.push_str(&chunk);
                Some(chunk)
            }
            Ok(None) => None,
            // a decoder whose output is not prefix-stable: the rest comes out at the end
            Err(_) => {
                self.stream = None;
                None
            }
        }
    }

    /// `(rest, full)`: the text not yet handed out (an incomplete character at the very end
    /// comes out as U+FFFD) and the whole text of every token pushed.
    ///
    /// # Errors
    /// The tokenizer cannot decode the tokens.
    pub fn finish(&self) -> Result<(String, String), GenerateError> {
        let full = self
            .tokenizer
            .decode(&self.ids, false)
            .map_err(|e| GenerateError::Decode(e.to_string()))?;
        let rest = full
            .strip_prefix(&self.handed_out)
            .unwrap_or("")
            .to_string();
        Ok((rest, full))
    }
}
