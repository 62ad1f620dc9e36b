//! The `#[locked]` attribute. Use it through `lock_core::locked`.

use proc_macro::TokenStream;

/// See `lock_core::locked`.
#[proc_macro_attribute]
pub fn locked(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}
