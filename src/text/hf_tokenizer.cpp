// tokenizer.json byte-level BPE. Regexes run on PCRE2 in UTF + UCP mode (HF uses Oniguruma with
// Unicode classes; the patterns in real tokenizer files mean the same in both). Results are
// checked token for token against HF `tokenizers` in tests/unit/text/hf_tokenizer_test.cpp.
#include "grpo/text/hf_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <algorithm>
#include <filesystem>
#include <climits>
#include <functional>
#include <map>
#include <mutex>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "grpo/core/config.h"
#include "grpo/core/error.h"
#include "grpo/text/chat_template.h"

using json = nlohmann::json;

namespace grpo::text {
namespace {

// ---------------------------------------------------------------- UTF-8 helpers
void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

// Length of the valid UTF-8 sequence at s[i], or 0 with `bad` = bytes forming the maximal invalid
// subpart (Unicode "substitution of maximal subparts", as Rust's from_utf8_lossy).
size_t utf8_seq(std::string_view s, size_t i, size_t* bad) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  if (c < 0x80) return 1;
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) need = 1;
  else if (c == 0xE0) need = 2, lo = 0xA0;
  else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) need = 2;
  else if (c == 0xED) need = 2, hi = 0x9F;
  else if (c == 0xF0) need = 3, lo = 0x90;
  else if (c >= 0xF1 && c <= 0xF3) need = 3;
  else if (c == 0xF4) need = 3, hi = 0x8F;
  else {
    *bad = 1;
    return 0;
  }
  for (size_t k = 1; k <= need; ++k) {
    if (i + k >= s.size()) {
      *bad = k;
      return 0;
    }
    unsigned char x = b(i + k);
    unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (x < l || x > h) {
      *bad = k;
      return 0;
    }
  }
  return need + 1;
}

std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t bad = 0, n = utf8_seq(s, i, &bad);
    if (n) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out += "\xEF\xBF\xBD";  // U+FFFD
      i += bad;
    }
  }
  return out;
}

// Code points of a valid UTF-8 string, with their byte offsets.
std::vector<std::string> utf8_chars(std::string_view s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    size_t bad = 0, n = utf8_seq(s, i, &bad);
    if (!n) n = bad;
    out.emplace_back(s.substr(i, n));
    i += n;
  }
  return out;
}

// ---------------------------------------------------------------- byte-level alphabet (GPT-2)
struct ByteLevelMap {
  std::string byte_to_char[256];
  std::unordered_map<uint32_t, uint8_t> char_to_byte;
  ByteLevelMap() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      uint32_t cp = keep ? b : 256 + n++;
      append_utf8(byte_to_char[b], cp);
      char_to_byte[cp] = static_cast<uint8_t>(b);
    }
  }
};
const ByteLevelMap& byte_level() {
  static const ByteLevelMap m;
  return m;
}

// ---------------------------------------------------------------- regex
class Regex {
 public:
  Regex(const std::string& pattern, const std::string& origin) {
    int err = 0;
    PCRE2_SIZE off = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                          PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err, &off, nullptr);
    if (!code_) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      fail("{}: regex /{}/ does not compile at offset {}: {}", origin, pattern, off,
           reinterpret_cast<char*>(msg));
    }
    jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
  }
  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  // Non-overlapping matches [begin, end) in s (valid UTF-8); empty matches are skipped.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view s) const {
    std::vector<std::pair<size_t, size_t>> out;
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_, nullptr);
    size_t start = 0;
    while (start <= s.size()) {
      int rc = jit_ ? pcre2_jit_match(code_, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), start, 0, md, nullptr)
                    : pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), start,
                                  PCRE2_NO_UTF_CHECK, md, nullptr);
      if (rc < 0) break;
      PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      size_t b = ov[0], e = ov[1];
      if (e == b) {  // empty match: step over one character
        if (b >= s.size()) break;
        size_t bad = 0, n = utf8_seq(s, b, &bad);
        start = b + (n ? n : 1);
        continue;
      }
      out.emplace_back(b, e);
      start = e;
    }
    pcre2_match_data_free(md);
    return out;
  }

 private:
  pcre2_code* code_ = nullptr;
  bool jit_ = false;
};

// ---------------------------------------------------------------- pipeline pieces
enum class SplitBehavior { kIsolated, kRemoved, kMergedWithPrevious, kMergedWithNext };

struct PreTok {
  enum Kind { kSplit, kByteLevel, kDigits } kind;
  std::shared_ptr<Regex> regex;
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool add_prefix_space = false;
  bool individual_digits = false;
};

std::vector<std::string> split_pieces(const std::string& s, const Regex& re, SplitBehavior how) {
  std::vector<std::string> out;
  size_t last = 0;
  std::string pending;  // for MergedWithNext
  for (auto [b, e] : re.find_all(s)) {
    std::string gap = s.substr(last, b - last), m = s.substr(b, e - b);
    switch (how) {
      case SplitBehavior::kIsolated:
        if (!gap.empty()) out.push_back(gap);
        out.push_back(m);
        break;
      case SplitBehavior::kRemoved:
        if (!gap.empty()) out.push_back(gap);
        break;
      case SplitBehavior::kMergedWithPrevious:
        if (!gap.empty()) out.push_back(gap + m);
        else if (!out.empty()) out.back() += m;
        else out.push_back(m);
        break;
      case SplitBehavior::kMergedWithNext:
        if (!gap.empty()) out.push_back(pending + gap), pending.clear();
        pending += m;
        break;
    }
    last = e;
  }
  std::string tail = pending + s.substr(last);
  if (!tail.empty()) out.push_back(tail);
  return out;
}

// An integer JSON value (a float or anything else is an error, never a cast).
int64_t json_int(const json& v, const std::string& origin, const char* what) {
  GRPO_CHECK(v.is_number_integer(), "{}: {} must be an integer, found {}", origin, what, v.dump());
  return v.get<int64_t>();
}

}  // namespace

struct HfTokenizer::Impl {
  std::string origin;
  std::unique_ptr<JinjaChatTemplate> chat;
  std::string chat_error;  // the template did not parse: reported at first use
  // vocabulary
  std::unordered_map<std::string, int64_t> vocab;
  std::vector<std::string> id_to_token;
  std::vector<bool> is_special;
  // added tokens, bucketed by first byte, longest first
  std::vector<std::vector<std::pair<std::string, int64_t>>> added_by_byte =
      std::vector<std::vector<std::pair<std::string, int64_t>>>(256);
  // normalizer: utf8proc options (0 = none)
  std::vector<int> normalizers;
  std::vector<PreTok> pre;
  bool has_byte_level = false;
  bool ignore_merges = false;
  std::unordered_map<uint64_t, std::pair<int32_t, int64_t>> merges;  // (a, b) -> (rank, merged id)
  int64_t eos = -1, pad = -1;
  std::optional<int64_t> bos;
  mutable std::mutex cache_mu;
  mutable std::unordered_map<std::string, std::vector<int64_t>> cache;

  static uint64_t key(int64_t a, int64_t b) { return (uint64_t(a) << 32) | uint64_t(b); }

  std::string normalize(const std::string& s) const {
    std::string cur = s;
    for (int opts : normalizers) {
      utf8proc_uint8_t* out = nullptr;
      auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(cur.data()), cur.size(), &out,
                            static_cast<utf8proc_option_t>(opts));
      GRPO_CHECK(n >= 0, "tokenizer: normalization failed: {}", utf8proc_errmsg(n));
      cur.assign(reinterpret_cast<char*>(out), n);
      free(out);
    }
    return cur;
  }

  std::vector<int64_t> bpe(const std::string& piece) const {
    {
      std::lock_guard<std::mutex> g(cache_mu);
      auto it = cache.find(piece);
      if (it != cache.end()) return it->second;
    }
    std::vector<int64_t> syms;
    auto direct = ignore_merges ? vocab.find(piece) : vocab.end();
    if (direct != vocab.end()) {
      syms.push_back(direct->second);
    } else {
      for (auto& ch : utf8_chars(piece)) {
        auto it = vocab.find(ch);
        GRPO_CHECK(it != vocab.end(), "{}: character '{}' is not in the vocabulary", origin, ch);
        syms.push_back(it->second);
      }
      while (syms.size() > 1) {
        int32_t best = INT32_MAX;
        size_t at = 0;
        int64_t merged = -1;
        for (size_t i = 0; i + 1 < syms.size(); ++i) {
          auto m = merges.find(key(syms[i], syms[i + 1]));
          if (m != merges.end() && m->second.first < best) best = m->second.first, at = i, merged = m->second.second;
        }
        if (merged < 0) break;
        syms[at] = merged;
        syms.erase(syms.begin() + at + 1);
      }
    }
    std::lock_guard<std::mutex> g(cache_mu);
    if (cache.size() > 200000) cache.clear();
    cache.emplace(piece, syms);
    return syms;
  }

  // A text segment with no added tokens in it.
  void encode_segment(const std::string& raw, std::vector<int64_t>& out) const {
    std::vector<std::string> pieces{normalize(raw)};
    const auto& bl = byte_level();
    for (const auto& p : pre) {
      std::vector<std::string> next;
      for (auto& piece : pieces) {
        if (p.kind == PreTok::kSplit) {
          for (auto& x : split_pieces(piece, *p.regex, p.behavior)) next.push_back(std::move(x));
        } else if (p.kind == PreTok::kDigits) {
          static const Regex each("\\p{Nd}", "Digits"), runs("\\p{Nd}+", "Digits");
          for (auto& x : split_pieces(piece, p.individual_digits ? each : runs, SplitBehavior::kIsolated))
            next.push_back(std::move(x));
        } else {  // ByteLevel: optional prefix space and GPT-2 split, then the byte alphabet
          std::string s = piece;
          if (p.add_prefix_space && (s.empty() || s[0] != ' ')) s = " " + s;
          std::vector<std::string> parts{s};
          if (p.regex) parts = split_pieces(s, *p.regex, SplitBehavior::kIsolated);
          for (auto& part : parts) {
            std::string mapped;
            for (unsigned char c : part) mapped += bl.byte_to_char[c];
            next.push_back(std::move(mapped));
          }
        }
      }
      pieces.swap(next);
    }
    for (auto& piece : pieces) {
      if (piece.empty()) continue;
      auto ids = bpe(piece);
      out.insert(out.end(), ids.begin(), ids.end());
    }
  }
};

HfTokenizer::HfTokenizer() : impl_(std::make_unique<Impl>()) {}
HfTokenizer::~HfTokenizer() = default;

std::unique_ptr<HfTokenizer> HfTokenizer::from_file(const std::string& path) {
  return from_json(core::read_file(path), path);
}

std::unique_ptr<HfTokenizer> HfTokenizer::from_json(const std::string& text, const std::string& origin) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", origin, e.what());
  }
  std::unique_ptr<HfTokenizer> t(new HfTokenizer());
  auto& m = *t->impl_;
  m.origin = origin;
  try {
    const auto& model = j.at("model");
    GRPO_CHECK(model.value("type", std::string("BPE")) == "BPE", "{}: model type '{}' is not supported (only BPE)",
               origin, model.value("type", std::string()));
    GRPO_CHECK(!model.value("byte_fallback", false), "{}: model.byte_fallback = true is not supported", origin);
    for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
      GRPO_CHECK(!model.contains(k) || model[k].is_null() || model[k] == "",
                 "{}: model.{} = {} is not supported", origin, k, model[k].dump());
    GRPO_CHECK(!model.contains("dropout") || model["dropout"].is_null(), "{}: BPE dropout is not supported", origin);
    m.ignore_merges = model.value("ignore_merges", false);
    int64_t max_id = -1;
    constexpr int64_t kMaxId = 1 << 24;
    GRPO_CHECK(model.at("vocab").is_object(), "{}: model.vocab must be an object of token: id", origin);
    for (auto it = model.at("vocab").begin(); it != model.at("vocab").end(); ++it) {
      int64_t id = json_int(*it, origin, "a vocab id");
      GRPO_CHECK(id >= 0 && id < kMaxId, "{}: vocab id {} of '{}' is out of range [0, {})", origin, id,
                 it.key(), kMaxId);
      m.vocab[it.key()] = id;
      max_id = std::max(max_id, id);
    }
    for (const auto& a : j.value("added_tokens", json::array())) {
      int64_t id = json_int(a.at("id"), origin, "an added token id");
      std::string content = a.at("content").get<std::string>();
      GRPO_CHECK(id >= 0 && id < kMaxId, "{}: added token id {} is out of range [0, {})", origin, id, kMaxId);
      for (const char* k : {"single_word", "lstrip", "rstrip"})
        GRPO_CHECK(!a.value(k, false), "{}: added token '{}' uses {} = true, which is not supported", origin,
                   content, k);
      GRPO_CHECK(!content.empty(), "{}: added token {} is empty", origin, id);
      max_id = std::max(max_id, id);
      m.vocab[content] = id;
      m.added_by_byte[static_cast<unsigned char>(content[0])].emplace_back(content, id);
    }
    for (auto& bucket : m.added_by_byte)
      std::stable_sort(bucket.begin(), bucket.end(),
                       [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
    m.id_to_token.assign(max_id + 1, "");
    m.is_special.assign(max_id + 1, false);
    for (auto& [tok, id] : m.vocab) m.id_to_token[id] = tok;
    for (const auto& a : j.value("added_tokens", json::array()))
      if (a.value("special", false)) m.is_special[json_int(a.at("id"), origin, "an added token id")] = true;
    int32_t rank = 0;
    for (const auto& mg : model.at("merges")) {
      std::string a, b;
      if (mg.is_string()) {
        auto s = mg.get<std::string>();
        auto sp = s.find(' ');
        GRPO_CHECK(sp != std::string::npos, "{}: merge '{}' is not 'a b'", origin, s);
        a = s.substr(0, sp), b = s.substr(sp + 1);
      } else {
        GRPO_CHECK(mg.is_array() && mg.size() == 2, "{}: merge {} is not a pair", origin, mg.dump());
        a = mg[0].get<std::string>(), b = mg[1].get<std::string>();
      }
      auto ia = m.vocab.find(a), ib = m.vocab.find(b), im = m.vocab.find(a + b);
      GRPO_CHECK(ia != m.vocab.end() && ib != m.vocab.end() && im != m.vocab.end(),
                 "{}: merge '{} {}' refers to tokens not in the vocabulary", origin, a, b);
      m.merges.emplace(Impl::key(ia->second, ib->second), std::make_pair(rank++, im->second));
    }
    // normalizer
    std::function<void(const json&)> add_norm = [&](const json& n) {
      if (n.is_null()) return;
      std::string type = n.at("type").get<std::string>();
      if (type == "Sequence") {
        for (const auto& x : n.at("normalizers")) add_norm(x);
      } else if (type == "NFC") {
        m.normalizers.push_back(UTF8PROC_STABLE | UTF8PROC_COMPOSE);
      } else if (type == "NFKC") {
        m.normalizers.push_back(UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
      } else if (type == "NFD") {
        m.normalizers.push_back(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE);
      } else if (type == "NFKD") {
        m.normalizers.push_back(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
      } else {
        fail("{}: normalizer '{}' is not supported (NFC, NFKC, NFD, NFKD, Sequence)", origin, type);
      }
    };
    add_norm(j.value("normalizer", json()));
    // pre-tokenizers
    static const char* kGpt2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
    std::function<void(const json&)> add_pre = [&](const json& p) {
      if (p.is_null()) return;
      std::string type = p.at("type").get<std::string>();
      if (type == "Sequence") {
        for (const auto& x : p.at("pretokenizers")) add_pre(x);
      } else if (type == "Split") {
        PreTok s{PreTok::kSplit};
        const auto& pat = p.at("pattern");
        std::string re;
        if (pat.contains("Regex")) {
          re = pat["Regex"].get<std::string>();
        } else {  // a literal string: escape it
          for (char c : pat.at("String").get<std::string>()) {
            if (std::string("\\^$.|?*+()[]{}").find(c) != std::string::npos) re += '\\';
            re += c;
          }
        }
        GRPO_CHECK(!p.value("invert", false), "{}: Split with invert = true is not supported", origin);
        std::string b = p.value("behavior", std::string("Isolated"));
        if (b == "Isolated") s.behavior = SplitBehavior::kIsolated;
        else if (b == "Removed") s.behavior = SplitBehavior::kRemoved;
        else if (b == "MergedWithPrevious") s.behavior = SplitBehavior::kMergedWithPrevious;
        else if (b == "MergedWithNext") s.behavior = SplitBehavior::kMergedWithNext;
        else fail("{}: Split behavior '{}' is not supported", origin, b);
        s.regex = std::make_shared<Regex>(re, origin);
        m.pre.push_back(s);
      } else if (type == "ByteLevel") {
        PreTok s{PreTok::kByteLevel};
        s.add_prefix_space = p.value("add_prefix_space", false);
        if (p.value("use_regex", true)) s.regex = std::make_shared<Regex>(kGpt2, origin);
        m.pre.push_back(s);
        m.has_byte_level = true;
      } else if (type == "Digits") {
        PreTok s{PreTok::kDigits};
        s.individual_digits = p.value("individual_digits", false);
        m.pre.push_back(s);
      } else {
        fail("{}: pre-tokenizer '{}' is not supported (Split, ByteLevel, Digits, Sequence)", origin, type);
      }
    };
    add_pre(j.value("pre_tokenizer", json()));
    GRPO_CHECK(m.has_byte_level, "{}: only byte-level BPE is supported (no ByteLevel pre-tokenizer found)", origin);
    if (j.contains("decoder") && !j["decoder"].is_null()) {
      std::string d = j["decoder"].at("type").get<std::string>();
      GRPO_CHECK(d == "ByteLevel", "{}: decoder '{}' is not supported (ByteLevel)", origin, d);
    }
  } catch (const json::exception& e) {
    fail("{}: unexpected structure: {}", origin, e.what());
  }
  for (const char* name : {"<|endoftext|>", "<｜end▁of▁sentence｜>", "</s>", "<|end_of_text|>"}) {
    auto id = t->token_id(name);
    if (id && m.eos < 0) m.eos = *id;
  }
  m.pad = m.eos;
  for (const char* name : {"<｜begin▁of▁sentence｜>", "<s>", "<|begin_of_text|>"}) {
    auto id = t->token_id(name);
    if (id && !m.bos) m.bos = *id;
  }
  return t;
}

std::vector<int64_t> HfTokenizer::encode(std::string_view text) const {
  const auto& m = *impl_;
  for (size_t i = 0; i < text.size();) {
    size_t bad = 0, n = utf8_seq(text, i, &bad);
    GRPO_CHECK(n, "tokenizer: text is not valid UTF-8 (byte {} at offset {})",
               int(static_cast<unsigned char>(text[i])), i);
    i += n;
  }
  std::vector<int64_t> out;
  std::string seg;
  for (size_t i = 0; i < text.size();) {
    const auto& bucket = m.added_by_byte[static_cast<unsigned char>(text[i])];
    bool hit = false;
    for (const auto& [content, id] : bucket) {
      if (text.compare(i, content.size(), content) == 0) {
        if (!seg.empty()) m.encode_segment(seg, out), seg.clear();
        out.push_back(id);
        i += content.size();
        hit = true;
        break;
      }
    }
    if (!hit) seg += text[i++];
  }
  if (!seg.empty()) m.encode_segment(seg, out);
  return out;
}

std::string HfTokenizer::decode(const std::vector<int64_t>& ids, bool skip_special) const {
  const auto& m = *impl_;
  const auto& bl = byte_level();
  std::string bytes;
  for (auto id : ids) {
    GRPO_CHECK(id >= 0 && id < static_cast<int64_t>(m.id_to_token.size()) && !m.id_to_token[id].empty(),
               "token id {} is not in the vocabulary", id);
    if (skip_special && m.is_special[id]) continue;
    const std::string& tok = m.id_to_token[id];
    // Byte-level decoder: map each char back to its byte; a token with any char outside the
    // byte alphabet (an added token such as "<|im_start|>" with a space) is taken verbatim.
    std::string mapped;
    bool ok = true;
    for (size_t i = 0; i < tok.size() && ok;) {
      size_t bad = 0, n = utf8_seq(tok, i, &bad);
      if (!n) {
        ok = false;
        break;
      }
      utf8proc_int32_t cp;
      utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(tok.data() + i), n, &cp);
      auto it = bl.char_to_byte.find(static_cast<uint32_t>(cp));
      if (it == bl.char_to_byte.end()) ok = false;
      else mapped += static_cast<char>(it->second);
      i += n;
    }
    bytes += ok ? mapped : tok;
  }
  return utf8_lossy(bytes);
}

int64_t HfTokenizer::vocab_size() const { return static_cast<int64_t>(impl_->id_to_token.size()); }
int64_t HfTokenizer::eos_id() const { return impl_->eos; }
int64_t HfTokenizer::pad_id() const { return impl_->pad; }
void HfTokenizer::set_eos_id(int64_t id) { impl_->eos = id; }
void HfTokenizer::set_pad_id(int64_t id) { impl_->pad = id; }
std::optional<int64_t> HfTokenizer::bos_id() const { return impl_->bos; }
void HfTokenizer::set_bos_id(std::optional<int64_t> id) { impl_->bos = id; }

std::unique_ptr<HfTokenizer> HfTokenizer::from_dir(const std::string& dir, const std::string& eos_override) {
  namespace fs = std::filesystem;
  const bool is_dir = fs::is_directory(dir);
  const std::string json_path = is_dir ? (fs::path(dir) / "tokenizer.json").string() : dir;
  GRPO_CHECK(fs::exists(json_path), "no tokenizer.json in '{}' (expected a Hugging Face tokenizer "
             "directory or a tokenizer.json file)", dir);
  auto t = from_file(json_path);
  const auto cfg_path = fs::path(json_path).parent_path() / "tokenizer_config.json";
  auto resolve = [&](const std::string& text, const std::string& what) -> int64_t {
    auto id = t->token_id(text);
    GRPO_CHECK(id.has_value(), "{}: {} '{}' is not a token of {}", cfg_path.string(), what, text, json_path);
    return *id;
  };
  if (fs::exists(cfg_path)) {
    auto j = json::parse(core::read_file(cfg_path.string()), nullptr, false);
    GRPO_CHECK(!j.is_discarded() && j.is_object(), "{}: not a JSON object", cfg_path.string());
    auto token_text = [&](const char* key) -> std::optional<std::string> {
      auto it = j.find(key);
      if (it == j.end() || it->is_null()) return std::nullopt;
      if (it->is_string()) return it->get<std::string>();
      if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
        return (*it)["content"].get<std::string>();
      fail("{}: '{}' must be a string or an object with 'content', found {}", cfg_path.string(), key,
           it->dump());
    };
    if (auto s = token_text("eos_token")) t->impl_->eos = resolve(*s, "eos_token");
    if (auto s = token_text("bos_token")) t->impl_->bos = resolve(*s, "bos_token");
    else if (j.contains("bos_token")) t->impl_->bos.reset();  // explicitly none (Qwen)
    t->impl_->pad = t->impl_->eos;
    if (auto s = token_text("pad_token")) t->impl_->pad = resolve(*s, "pad_token");
  }
  if (!eos_override.empty()) {
    auto id = t->token_id(eos_override);
    GRPO_CHECK(id.has_value(), "tokenizer.eos_token '{}' is not a token of {}", eos_override, json_path);
    t->impl_->eos = *id;
  }
  GRPO_CHECK(t->impl_->eos >= 0, "{}: no EOS token found (set tokenizer.eos_token)", json_path);
  try {
    t->impl_->chat = JinjaChatTemplate::from_dir(dir);
  } catch (const Error& e) {
    t->impl_->chat_error = e.what();
  }
  return t;
}

const JinjaChatTemplate* HfTokenizer::chat_template() const {
  if (!impl_->chat_error.empty()) throw Error(impl_->chat_error);
  return impl_->chat.get();
}

std::optional<int64_t> HfTokenizer::token_id(std::string_view token) const {
  auto it = impl_->vocab.find(std::string(token));
  if (it == impl_->vocab.end()) return std::nullopt;
  return it->second;
}

}  // namespace grpo::text
