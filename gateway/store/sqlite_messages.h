// The connectors' message store (inbox, outbox) on SQLite. Internal to the store library.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "gateway/store/resource_store.h"
#include "gateway/store/sqlite_connection.h"

namespace passerelle::store::sqlite {

Result<void> insertInbox(Connection& c, InboxMessage& m);
Result<std::optional<InboxMessage>> findInbox(Connection& c, const std::string& partner, const std::string& controlId);
Result<std::vector<InboxMessage>> listInbox(Connection& c, const std::string& status, int limit);
Result<std::optional<InboxMessage>> inboxById(Connection& c, std::int64_t id);
Result<void> updateInbox(Connection& c, const InboxMessage& m);

Result<void> insertDelivery(Connection& c, Delivery& d, std::int64_t nowMs);
Result<void> saveDelivery(Connection& c, const Delivery& d);
Result<std::optional<Delivery>> loadDelivery(Connection& c, std::int64_t id);
Result<std::vector<Delivery>> dueDeliveries(Connection& c, const std::string& destination, std::int64_t nowMs, int limit);
Result<std::optional<std::int64_t>> nextDeliveryTime(Connection& c, const std::string& destination);
Result<std::vector<Delivery>> listDeliveries(Connection& c, const DeliveryFilter& f);
Result<std::vector<DeliveryCounts>> deliveryCounts(Connection& c);

// Copying a store: every row in id order, and rows inserted with their own ids.
Result<std::vector<InboxMessage>> scanInbox(Connection& c, std::int64_t afterId, int limit);
Result<std::vector<Delivery>> scanDeliveries(Connection& c, std::int64_t afterId, int limit);
Result<void> copyInbox(Connection& c, const InboxMessage& m);
Result<void> copyDelivery(Connection& c, const Delivery& d);

}  // namespace passerelle::store::sqlite
