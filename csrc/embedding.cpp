// (not written yet)
#include "common.h"

namespace tg {

void register_embedding(py::module_&) {}

}  // namespace tg
